"""Policy, pure: what a namespace needs and how to get there from what is live.

Lives here: render.py (spec + namespace -> a Decision with its NetworkPolicies),
plan.py (desired vs live -> ordered actions, ownership by field manager),
conditions.py (outcomes -> the EnvironmentIsolation's status).

May import: envisolation.spec and the standard library. No I/O.
"""
