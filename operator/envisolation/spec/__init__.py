"""The spec and its rules, pure: what an EnvironmentIsolation says and what is valid.

Lives here: the model (model.py: frozen dataclasses, NamespaceFacts, IsolationRecord),
parsing and validation (parse.py by hand, structure.py from the CRD's schema), the
CRD's schema and CEL rules (schema.py), label selectors (selectors.py), the JSON shapes
the operator reads and writes (kinds.py), names and defaults (constants.py).

May import: the standard library only. No I/O.
"""
