"""Writes docs/verify-example.svg, the picture the README shows: `envisolation verify -o svg`
of examples/three-segments.yaml with its namespaces, the policies the operator keeps
(`envisolation render`), and two tenant policies that reopen dev -> test.

    .venv/bin/python hack/gen_pictures.py      (needs Graphviz's `dot`)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "verify-example.svg"


def cli(*args: str) -> bytes:
    res = subprocess.run([sys.executable, "-m", "envisolation", *args], capture_output=True,
                         check=False, env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"})  # fmt: skip
    if res.returncode not in (0, 1):
        sys.exit(res.stderr.decode())
    return res.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        shutil.copy(ROOT / "examples" / "three-segments.yaml", tmp / "iso.yaml")
        nss = [{"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": s, "labels": {"environment": s}}} for s in ("dev", "test", "prod")]  # fmt: skip
        (tmp / "ns.yaml").write_text(yaml.safe_dump_all(nss))
        (tmp / "managed.yaml").write_bytes(
            cli("render", "-f", str(tmp / "iso.yaml"), "--namespaces", str(tmp / "ns.yaml"))
        )
        tenants = [
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "tenant-admit-dev", "namespace": "test"},
             "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                      "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"environment": "dev"}}}],
                                   "ports": [{"protocol": "TCP", "port": 80}]}]}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "tenant-call-test", "namespace": "dev"},
             "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                      "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"environment": "test"}}}]}]}},
        ]  # fmt: skip
        (tmp / "tenants.yaml").write_text(yaml.safe_dump_all(tenants))
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_bytes(cli("verify", "--from", str(tmp), "-o", "svg"))
    print(OUT)


if __name__ == "__main__":
    main()
