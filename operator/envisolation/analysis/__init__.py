"""Analysis, pure: what the NetworkPolicies in a cluster really allow.

Lives here: conns.py (sets of protocol/port), reachability.py (NetworkPolicy semantics
over workloads: who may connect to whom), exposure.py (cross-segment paths the spec
does not declare), verify.py (`envisolation verify` over objects).

May import: envisolation.spec, envisolation.policy and the standard library. No I/O.
"""
