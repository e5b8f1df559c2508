"""The dataplane lab: a NetworkPolicy firewall that filters real packets between pods.

Topology (nothing of it in the host's network namespace; every address in 198.18.0.0/15):

    host netns ── API server on 127.0.0.1:PORT
        │  relay: a socket made inside the node netns (127.0.0.1:6443) whose connections
        │  the lab's thread carries to the API server (no listener on the host side at all)
    node netns "<run>-node": lo 127.0.0.1 + 198.18.0.1/32, ip_forward=1, kube-router firewall
        ├── veth ── pod netns "<run>-p1": eth0 198.18.1.1/32, route 198.18.0.0/15 via node
        ├── veth ── pod netns "<run>-p2": ...
        └── veth ── external netns "<run>-x1": eth0 198.19.0.1/32 (an address outside the
                    cluster, for ipBlock rules; no Pod object)

The node netns routes only to its own /32s: there is no route out of the lab. Pods have
no kubelet: the lab creates the Pod objects with `nodeName`, sets their status through
the status subresource, and serves every declared port itself (TCP and UDP listeners that
answer with the endpoint's name), from one asyncio loop on a thread of its own.

kube-router applies rules asynchronously. `settle()` waits for the rules the current API
state implies: it relabels a sentinel namespace, pod and NetworkPolicy (one per informer
kube-router runs; each watch delivers in order, so a sentinel's event arriving means every
earlier event of its kind has reached kube-router's cache), then waits for a full sync
that starts after the three events and finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.dataplane import netns

T = TypeVar("T")

NODE_NAME = "dataplane-node"
NODE_IP = "198.18.0.1"
LAB_NET = "198.18.0.0/15"
POD_BASE = int(ipaddress.IPv4Address("198.18.1.1"))
EXT_BASE = int(ipaddress.IPv4Address("198.19.0.1"))
RELAY_PORT = 6443
SENTINEL = "dataplane-sentinel"
PROBE_TIMEOUT = 1.0
OPEN, REFUSED, TIMEOUT = "open", "refused", "timeout"  # refused and timeout are both denied


@dataclass(frozen=True)
class Port:
    protocol: str  # TCP or UDP (this kernel has no SCTP sockets)
    port: int
    name: str = ""


@dataclass(eq=False)  # one object per endpoint: compared and hashed by identity
class Endpoint:
    key: str  # "ns/name" of a pod; "ext/name" of an external address
    netns: str
    ip: str
    ports: tuple[Port, ...]
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def is_pod(self) -> bool:
        return not self.key.startswith("ext/")


@dataclass(frozen=True)
class Probe:
    src: Endpoint
    dst: Endpoint
    protocol: str
    port: int


class KubeRouter:
    """kube-router's firewall inside the node netns; its log lines kept with arrival times."""

    def __init__(self, binary: Path, node_ns: str, kubeconfig: Path, log: Path) -> None:
        self.log = log
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", node_ns, "env", f"NODE_NAME={NODE_NAME}", str(binary),
             "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
             f"--kubeconfig={kubeconfig}", f"--hostname-override={NODE_NAME}",
             "--health-port=0", "--iptables-sync-period=30s", "--v=2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with open(self.log, "ab") as out:
            for raw in self.proc.stderr:
                out.write(raw)
                out.flush()
                with self._lock:
                    self.lines.append((time.monotonic(), raw.decode(errors="replace")))

    def mark(self) -> int:
        with self._lock:
            return len(self.lines)

    def find(self, needle: str, after: int) -> int | None:
        with self._lock:
            for i in range(after, len(self.lines)):
                if needle in self.lines[i][1]:
                    return i
        return None

    def at(self, index: int) -> float:
        with self._lock:
            return self.lines[index][0]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 30) -> str:
        with self._lock:
            return "".join(line for _, line in self.lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(timeout=5)


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.key, addr)


class Lab:
    """One node, its firewall, and the endpoints a test adds. Use as a context manager."""

    _count = 0

    def __init__(self, kubectl: Any, binary: Path, work: Path, api_port: int) -> None:
        self.kubectl = kubectl
        self.binary = binary
        self.work = work
        self.api_port = api_port
        Lab._count += 1
        self.run = f"evdp{os.getpid()}x{Lab._count}"
        self.node = f"{self.run}-node"
        self.endpoints: dict[str, Endpoint] = {}
        self._next_pod = 0
        self._next_ext = 0
        self._nonce = 0
        self._namespaces: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lab", daemon=True)
        self.router: KubeRouter | None = None
        self._relay_closers: list[Callable[[], None]] = []
        self.settle_times: list[float] = []

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        for stale in netns.names():  # labs whose process died without cleaning up
            m = re.fullmatch(r"evdp(\d+)x\d+-\w+", stale)
            if m and not Path(f"/proc/{m.group(1)}").exists():
                netns.delete(stale)
        netns.add(self.node)
        netns.ip_batch(["link set lo up", f"addr add {NODE_IP}/32 dev lo"], self.node)
        # REJECT answers with ICMP, which the kernel rate-limits (per destination, and per
        # netns: 1000/s with a burst of 50): without this, fast probing turns refusals
        # into timeouts
        for key, value in (("net.ipv4.ip_forward", "1"), ("net.ipv4.icmp_ratelimit", "0"),
                           ("net.ipv4.icmp_msgs_per_sec", "1000000"),
                           ("net.ipv4.icmp_msgs_burst", "1000000")):  # fmt: skip
            netns.run("sysctl", "-qw", f"{key}={value}", netns=self.node)
        self._thread.start()
        self.call(self._relay())
        self._cluster_objects()
        kubeconfig = self.work / "kube-router.kubeconfig"
        cfg = json.loads(self.kubectl("config", "view", "--raw", "-o", "json").stdout)
        cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{RELAY_PORT}"
        kubeconfig.write_text(json.dumps(cfg))
        self.router = KubeRouter(self.binary, self.node, kubeconfig, self.work / "kube-router.log")
        deadline = time.monotonic() + 60
        while self.router.find("sync iptables took", 0) is None:
            if not self.router.alive() or time.monotonic() > deadline:
                raise RuntimeError("kube-router did not sync:\n" + self.router.tail())
            time.sleep(0.05)

    def close(self) -> None:
        if self.router is not None:
            self.router.stop()
        for ns in self._namespaces:  # the next lab's addresses must not meet these pods
            if ns != SENTINEL:
                self.kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force",
                             "--wait=false", check=False)  # fmt: skip
                self.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.call(self._close_all(), timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        for name in netns.names():
            if name.startswith(self.run + "-"):
                netns.delete(name)

    async def _close_all(self) -> None:
        for ep in self.endpoints.values():
            for c in ep.closers:
                c()
        for c in self._relay_closers:
            c()

    # -- the API server seen from the node netns ------------------------------------------

    async def _relay(self) -> None:
        with netns.entered(self.node):
            lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", RELAY_PORT))
        lsock.listen(64)
        lsock.setblocking(False)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except OSError:
                pass
            finally:
                w.close()

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                ur, uw = await asyncio.open_connection("127.0.0.1", self.api_port)
            except OSError:
                w.close()
                return
            await asyncio.gather(pipe(r, uw), pipe(ur, w))

        server = await asyncio.start_server(handle, sock=lsock)
        self._relay_closers = [server.close]

    def _cluster_objects(self) -> None:
        """The Node kube-router runs as, and the sentinels settle() relabels."""
        k = self.kubectl
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME,
                "labels": {"kubernetes.io/hostname": NODE_NAME}}}  # fmt: skip
        k.apply(json.dumps(node))
        status = {**node, "status": {"addresses": [
            {"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE_NAME}]}}  # fmt: skip
        k("apply", "--server-side", "--subresource=status", "--field-manager=lab", "-f", "-",
          input=json.dumps(status))  # fmt: skip
        self.namespace(SENTINEL, {"nonce": "0"})
        k.apply(json.dumps({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "sentinel", "namespace": SENTINEL, "labels": {"nonce": "0"}},
            "spec": {"podSelector": {"matchLabels": {"dataplane-sentinel": "selects-nothing"}},
                     "policyTypes": ["Ingress"]},
        }))  # fmt: skip
        self._create_pod_objects([(SENTINEL, "sentinel", {"nonce": "0"}, ())], status=False)

    # -- namespaces and endpoints -----------------------------------------------------------

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": labels or {}}}  # fmt: skip
        self.kubectl.apply(json.dumps(body))
        if name not in self._namespaces:
            self._namespaces.append(name)

    def _create_pod_objects(
        self,
        pods: Sequence[tuple[str, str, dict[str, str], Sequence[Port]]],
        status: bool = True,
        ips: Sequence[str] = (),
    ) -> None:
        docs = []
        for ns, name, labels, ports in pods:
            cports = [{"containerPort": p.port, "protocol": p.protocol,
                       **({"name": p.name} if p.name else {})} for p in ports]  # fmt: skip
            docs.append({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"nodeName": NODE_NAME, "automountServiceAccountToken": False,
                         "containers": [{"name": "app", "image": "envisolation.invalid/lab",
                                         "ports": cports}]},
            })  # fmt: skip
        listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
        deadline = time.monotonic() + 30
        while True:  # a fresh namespace's default ServiceAccount may not exist yet
            res = self.kubectl("apply", "-f", "-", input=listing, check=False)
            if res.returncode == 0:
                break
            if "serviceaccount" not in res.stderr or time.monotonic() > deadline:
                raise AssertionError(f"creating pods failed:\n{res.stderr}")
            time.sleep(0.2)
        if not status:
            return
        stats = []
        for (ns, name, _, _), pod_ip in zip(pods, ips, strict=True):
            stats.append({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                "status": {"phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
                           "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}],
                           "conditions": [{"type": "Ready", "status": "True"}]},
            })  # fmt: skip
        self.kubectl("apply", "--server-side", "--subresource=status", "--field-manager=lab",
                     "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": stats}))  # fmt: skip

    def add_pods(
        self, pods: Iterable[tuple[str, str, dict[str, str], Sequence[Port]]]
    ) -> list[Endpoint]:
        """Pods (namespace, name, labels, ports): their netns, listeners and API objects."""
        pods = list(pods)
        eps = []
        for ns, name, _, ports in pods:
            self._next_pod += 1
            n = self._next_pod
            addr = str(ipaddress.IPv4Address(POD_BASE + (n // 250) * 256 + n % 250))
            eps.append(self._wire(f"{ns}/{name}", f"{self.run}-p{n}", addr, tuple(ports)))
        self._create_pod_objects(pods, ips=[e.ip for e in eps])
        return eps

    def add_external(self, name: str, ports: Sequence[Port], addr: str | None = None) -> Endpoint:
        """An address outside the cluster (no Pod object), reachable through the node."""
        self._next_ext += 1
        addr = addr or str(ipaddress.IPv4Address(EXT_BASE + self._next_ext - 1))
        assert ipaddress.IPv4Address(addr) in ipaddress.IPv4Network("198.19.0.0/16")
        return self._wire(f"ext/{name}", f"{self.run}-x{self._next_ext}", addr, tuple(ports))

    def _wire(self, key: str, ns_name: str, addr: str, ports: tuple[Port, ...]) -> Endpoint:
        veth = "v" + ns_name.rsplit("-", 1)[1]
        netns.add(ns_name)
        netns.ip_batch([f"link add {veth} type veth peer name eth0 netns {ns_name}",
                        f"link set {veth} up", f"route add {addr}/32 dev {veth}"], self.node)  # fmt: skip
        netns.ip_batch(["link set lo up", "link set eth0 up", f"addr add {addr}/32 dev eth0",
                        f"route add {NODE_IP}/32 dev eth0 scope link",
                        f"route add {LAB_NET} via {NODE_IP} dev eth0 onlink"], ns_name)  # fmt: skip
        ep = Endpoint(key, ns_name, addr, ports)
        self.call(self._listen(ep))
        self.endpoints[key] = ep
        return ep

    def remove_pods(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for key in keys:
            ns, name = key.split("/", 1)
            self.kubectl("delete", "pod", "-n", ns, name, "--grace-period=0", "--force",
                         "--ignore-not-found", "--wait=false", check=False)  # fmt: skip
        for key in keys:
            ep = self.endpoints.pop(key)
            self.call(self._unlisten(ep))
            netns.delete(ep.netns)

    async def _unlisten(self, ep: Endpoint) -> None:
        for c in ep.closers:
            c()

    async def _listen(self, ep: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        answer = (ep.key + "\n").encode()

        async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(answer)
            with contextlib.suppress(OSError):
                await w.drain()
            w.close()

        for p in ep.ports:
            with netns.entered(ep.netns):
                kind = socket.SOCK_STREAM if p.protocol == "TCP" else socket.SOCK_DGRAM
                sock = socket.socket(socket.AF_INET, kind)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ep.ip, p.port))
            sock.setblocking(False)
            if p.protocol == "TCP":
                sock.listen(128)
                server = await asyncio.start_server(serve, sock=sock)
                ep.closers.append(server.close)
            else:
                transport, _ = await loop.create_datagram_endpoint(lambda: _Echo(answer), sock=sock)
                ep.closers.append(transport.close)

    # -- packets ---------------------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _probe(self, p: Probe, timeout: float) -> str:
        loop = asyncio.get_running_loop()
        kind = socket.SOCK_STREAM if p.protocol == "TCP" else socket.SOCK_DGRAM
        with netns.entered(p.src.netns):
            sock = socket.socket(socket.AF_INET, kind)
        sock.setblocking(False)
        want = (p.dst.key + "\n").encode()
        try:
            if p.protocol == "TCP":
                await asyncio.wait_for(loop.sock_connect(sock, (p.dst.ip, p.port)), timeout)
                data = await asyncio.wait_for(loop.sock_recv(sock, 256), timeout)
            else:
                sock.connect((p.dst.ip, p.port))
                await loop.sock_sendall(sock, b"?")
                data = await asyncio.wait_for(loop.sock_recv(sock, 256), timeout)
        except ConnectionRefusedError:
            return REFUSED
        except TimeoutError:
            return TIMEOUT
        except OSError as e:
            return f"error: {e}"
        finally:
            sock.close()
        return OPEN if data == want else f"answered by {data!r}"

    async def _probe_all(self, probes: Sequence[Probe], timeout: float) -> list[str]:
        sem = asyncio.Semaphore(128)

        async def one(p: Probe) -> str:
            async with sem:
                return await self._probe(p, timeout)

        return list(await asyncio.gather(*(one(p) for p in probes)))

    def probe(self, probes: Sequence[Probe], timeout: float = PROBE_TIMEOUT) -> list[str]:
        return self.call(self._probe_all(probes, timeout))

    def start_prober(self, probes: Sequence[Probe], per_second: float) -> Prober:
        prober = Prober(self, list(probes), per_second)
        prober.task = asyncio.run_coroutine_threadsafe(prober.run(), self._loop)
        return prober

    # -- waiting for the firewall -------------------------------------------------------------

    def settle(self, timeout: float = 60) -> float:
        """Wait until kube-router's rules reflect the API state as of this call; seconds."""
        assert self.router is not None
        t0 = time.monotonic()
        mark = self.router.mark()
        self._nonce += 1
        self.kubectl("label", "--overwrite", "-n", SENTINEL, f"namespace/{SENTINEL}",
                     "pod/sentinel", "networkpolicy/sentinel", f"nonce={self._nonce}")  # fmt: skip
        needles = (f"Received update for namespace: {SENTINEL}",
                   f"Received update to pod: {SENTINEL}/sentinel",
                   f"Received update for network policy: {SENTINEL}/sentinel")  # fmt: skip
        deadline = t0 + timeout
        while True:
            seen = [self.router.find(n, mark) for n in needles]
            if all(i is not None for i in seen):
                last = max(i for i in seen if i is not None)
                start = self.router.find("Starting sync of iptables", last + 1)
                if start is not None and self.router.find("sync iptables took", start + 1):
                    break
            if not self.router.alive():
                raise RuntimeError("kube-router exited:\n" + self.router.tail())
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"kube-router did not sync within {timeout}s:\n{self.router.tail()}"
                )
            time.sleep(0.01)
        took = time.monotonic() - t0
        self.settle_times.append(took)
        return took

    def firewall(self) -> str:
        """iptables-save of the node netns (for failure reports)."""
        return netns.run("iptables-save", netns=self.node, check=False)


@dataclass
class Prober:
    """Probes sent round-robin at a fixed rate; every result kept with its send time."""

    lab: Lab
    probes: list[Probe]
    per_second: float
    results: list[tuple[float, Probe, str]] = field(default_factory=list)
    task: Any = None
    _stop: bool = False

    async def run(self) -> None:
        i = 0
        pending: set[asyncio.Task[None]] = set()

        async def one(p: Probe, at: float) -> None:
            self.results.append((at, p, await self.lab._probe(p, PROBE_TIMEOUT)))

        next_at = time.monotonic()
        while not self._stop:
            p = self.probes[i % len(self.probes)]
            i += 1
            t = asyncio.create_task(one(p, time.monotonic()))
            pending.add(t)
            t.add_done_callback(pending.discard)
            next_at += 1 / self.per_second
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if pending:
            await asyncio.gather(*pending)

    def stop(self) -> list[tuple[float, Probe, str]]:
        self._stop = True
        self.task.result(30)
        return self.results
