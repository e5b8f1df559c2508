"""Runtime, I/O: the operator process that keeps a cluster isolated.

Lives here: the API clients (client.py: writes, LISTs, status, Events over aiohttp;
watch.py: watches with the official client in threads; api.py: their errors and the
Protocols the rest is written against), the cluster view (view.py) and what keeps it
current (sync.py), the loop (controller.py) and its collaborators (isolations.py,
schedule.py, writer.py, reporter.py, events.py, monitor.py, memory.py), Kopf handlers
(handlers.py), metrics (metrics.py) and logging (logs.py).

May import: everything in envisolation except cli.py, plus kopf, kubernetes, aiohttp,
structlog and prometheus_client. Nothing below it imports it.
"""
