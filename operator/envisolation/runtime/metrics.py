"""Prometheus metrics, served on /metrics by `envisolation run`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from envisolation import __version__

NAMESPACES = Gauge(
    "envisolation_namespaces",
    "Namespaces per isolation, segment and state (Isolated, Audit, Off, Conflict, Excluded)",
    ["isolation", "segment", "state"],
)
POLICIES_WRITTEN = Counter(
    "envisolation_policies_written_total",
    "NetworkPolicies the operator created, updated or deleted",
    ["action"],
)
POLICIES_REPAIRED = Counter(
    "envisolation_policies_repaired_total",
    "Managed NetworkPolicies restored after someone else changed or deleted them",
)
RECONCILE_SECONDS = Histogram(
    "envisolation_reconcile_duration_seconds",
    "Time to reconcile one batch of namespaces",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
API_WRITES = Counter("envisolation_api_writes_total", "API writes by kind", ["kind"])
EVENTS_DROPPED = Counter(
    "envisolation_events_dropped_total", "Events not posted because too many were queued"
)
API_ERRORS = Counter("envisolation_api_errors_total", "Failed API calls", ["verb", "code"])
API_THROTTLED = Counter(
    "envisolation_api_throttled_total",
    "API responses 429 (API Priority and Fairness); each request is sent again after Retry-After",
)
API_IN_FLIGHT_LIMIT = Gauge(
    "envisolation_api_in_flight_limit",
    "API requests allowed in flight at once: halved on throttling, grown back on success",
)
# Integrals over time: their rate over a window is the mean number in flight (or waiting
# for a slot) in it; the bench reads them to tell what bounds a rollout.
API_IN_FLIGHT_SECONDS = Counter(
    "envisolation_api_in_flight_seconds_total",
    "API requests in flight, integrated over time (rate: the mean number in flight)",
)
API_QUEUED_SECONDS = Counter(
    "envisolation_api_queued_seconds_total",
    "API requests waiting for an in-flight slot, integrated over time (rate: the mean queue)",
)
EXPOSURES = Gauge(
    "envisolation_exposures",
    "Cross-segment paths the spec does not allow, by segment pair",
    ["isolation", "source_segment", "destination_segment"],
)
NOT_ISOLATABLE = Gauge(
    "envisolation_not_isolatable_pods",
    "Pods in the isolation's namespaces that use the host's network (no NetworkPolicy applies)",
    ["isolation"],
)
BUILD = Info("envisolation_build", "The running version")
BUILD.info({"version": __version__})
LEADER = Gauge("envisolation_leader", "1 while this instance leads (may write), else 0")
LEADER_TRANSITIONS = Counter(
    "envisolation_leader_transitions_total", "Times this instance became the leader"
)
