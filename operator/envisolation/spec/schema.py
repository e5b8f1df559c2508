"""The CRD's schema and CEL rules, written once (long because it is data: every field described).

Structural, with a description on every field; the shared pieces (label selectors,
peers, ports) are functions. hack/gen_crd.py writes it to crds/ (`make crd`), and the
parser reads its structural limits (structure.py), so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
Schema = dict[str, Any]


def string(desc: str, **kw: Any) -> Schema:
    return {"type": "string", "description": desc, **kw}


def rule(expr: str, message: str | None = None, **kw: Any) -> Schema:
    """A CEL rule. `messageExpression=` names the offending value (the API server shows
    `message` only if the expression fails); `fieldPath=` points at the offending field."""
    out: Schema = {"rule": expr}
    if message:
        out["message"] = message
    out.update(kw)
    return out


def quoted(expr: str) -> str:
    """CEL for a string value in double quotes, as the messages show values."""
    return "'\"' + " + expr + " + '\"'"


def selector(desc: str) -> Schema:
    return {
        "type": "object",
        "description": desc,
        "properties": {
            "matchLabels": {
                "type": "object",
                "description": "Labels that must all be present with these values.",
                "maxProperties": 32,
                "additionalProperties": {"type": "string", "maxLength": 63},
            },
            "matchExpressions": {
                "type": "array",
                "description": "Requirements that must all hold.",
                "maxItems": 16,
                "items": {
                    "type": "object",
                    "description": "A label requirement: key, operator and values.",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": string("The label key.", maxLength=317, pattern=LABEL_KEY),
                        "operator": string(
                            "In, NotIn, Exists or DoesNotExist.",
                            enum=["In", "NotIn", "Exists", "DoesNotExist"],
                        ),
                        "values": {
                            "type": "array",
                            "description": "Values for In and NotIn; empty for Exists and "
                            "DoesNotExist.",
                            "maxItems": 64,
                            "items": {"type": "string", "maxLength": 63},
                        },
                    },
                    "x-kubernetes-validations": [
                        rule(
                            "self.operator in ['In', 'NotIn'] ? "
                            "(has(self.values) && size(self.values) > 0) : "
                            "(!has(self.values) || size(self.values) == 0)",
                            "values must be non-empty for In and NotIn, and empty for Exists "
                            "and DoesNotExist",
                            messageExpression="'must be ' + (self.operator in ['In', 'NotIn'] ? "
                            "'non-empty' : 'empty') + ' for operator ' + self.operator + "
                            "' (key ' + " + quoted("self.key") + " + ')'",
                            fieldPath=".values",
                        )
                    ],
                },
            },
        },
    }


def port(desc: str) -> Schema:
    return {
        "type": "object",
        "description": desc,
        "properties": {
            "protocol": string(
                "TCP, UDP or SCTP (default TCP).", enum=["TCP", "UDP", "SCTP"], default="TCP"
            ),
            "port": {
                "x-kubernetes-int-or-string": True,
                "description": "A port number or a named container port; absent means all "
                "ports of the protocol.",
            },
            "endPort": {
                "type": "integer",
                "format": "int32",
                "minimum": 1,
                "maximum": 65535,
                "description": "With a numeric port, the last port of the range port-endPort.",
            },
        },
        "x-kubernetes-validations": [
            rule(
                "!has(self.endPort) || (has(self.port) && type(self.port) == int && "
                "self.endPort >= self.port)",
                "endPort needs a numeric port and must be greater than or equal to port",
                messageExpression="!has(self.port) || type(self.port) != int ? 'endPort needs "
                "a numeric port, not a port name or none' : 'endPort is less than port'",
                fieldPath=".endPort",
            ),
            rule(
                "!has(self.port) || type(self.port) != int || "
                "(self.port >= 1 && self.port <= 65535)",
                "a numeric port must be 1-65535",
                fieldPath=".port",
            ),
        ],
    }


def peer(direction: str) -> Schema:
    return {
        "type": "object",
        "description": (
            f"A {direction} peer, as in NetworkPolicy, or a whole segment. podSelector and "
            "namespaceSelector together mean the selected pods of the selected namespaces; "
            "segment (optionally with podSelector) means the namespaces of that segment; "
            "ipBlock stands alone."
        ),
        "properties": {
            "podSelector": selector(
                "Pods selected by label (in this namespace, or in the "
                "namespaces selected alongside)."
            ),
            "namespaceSelector": selector(
                "Namespaces selected by label; the label "
                "kubernetes.io/metadata.name names one namespace."
            ),
            "segment": string(
                "A segment declared in spec.segments: every namespace of that segment.",
                maxLength=63,
                pattern=DNS_LABEL,
            ),
            "ipBlock": {
                "type": "object",
                "description": "An IP range, for traffic to or from outside the cluster.",
                "required": ["cidr"],
                "properties": {
                    "cidr": string("The range, such as 192.0.2.0/24.", maxLength=43),
                    "except": {
                        "type": "array",
                        "description": "Ranges inside cidr to leave out.",
                        "maxItems": 8,
                        "items": {"type": "string", "maxLength": 43},
                    },
                },
                "x-kubernetes-validations": [
                    rule(
                        "isCIDR(self.cidr)",
                        "cidr must be a valid CIDR such as 192.0.2.0/24",
                        messageExpression=quoted("self.cidr")
                        + " + ' is not a valid CIDR (such as 192.0.2.0/24)'",
                        fieldPath=".cidr",
                    ),
                    rule(
                        "!has(self.except) || !isCIDR(self.cidr) || self.except.all(e, "
                        "isCIDR(e) && cidr(self.cidr).containsCIDR(e))",
                        "every except entry must be a valid CIDR inside cidr",
                        messageExpression=except_message(),
                        fieldPath=".except",
                    ),
                ],
            },
        },
        "x-kubernetes-validations": [
            rule(
                "has(self.podSelector) || has(self.namespaceSelector) || has(self.ipBlock) || "
                "has(self.segment)",
                "a peer needs one of podSelector, namespaceSelector, ipBlock or segment",
                messageExpression="'an empty peer: it needs one of podSelector, "
                "namespaceSelector, ipBlock or segment'",
            ),
            rule(
                "!has(self.ipBlock) || !(has(self.podSelector) || has(self.namespaceSelector) "
                "|| has(self.segment))",
                "ipBlock cannot be combined with podSelector, namespaceSelector or segment",
                messageExpression="'ipBlock ' + " + quoted("self.ipBlock.cidr") + " + "
                "' cannot be combined with ' + (has(self.podSelector) ? 'podSelector' : "
                "has(self.namespaceSelector) ? 'namespaceSelector' : 'segment')",
            ),
            rule(
                "!(has(self.segment) && has(self.namespaceSelector))",
                "segment and namespaceSelector cannot both be set: the segment already "
                "selects its namespaces",
                messageExpression="'segment ' + " + quoted("self.segment") + " + ' and "
                "namespaceSelector cannot both be set: the segment already selects its "
                "namespaces'",
            ),
        ],
    }


def traffic(direction: str, key: str) -> Schema:
    return {
        "type": "array",
        "description": f"{direction.capitalize()} rules; each admits its peers on its ports. "
        "An empty list admits nothing; a rule with no peers admits every peer.",
        "maxItems": 8,
        "items": {
            "type": "object",
            "description": f"One {direction} rule: peers and ports.",
            "properties": {
                key: {
                    "type": "array",
                    "description": "The peers; absent means every peer.",
                    "maxItems": 10,
                    "items": peer(direction),
                },
                "ports": {
                    "type": "array",
                    "description": "The ports; absent means every port.",
                    "maxItems": 10,
                    "items": port("A port, or a range of ports."),
                },
            },
        },
    }


def peers_name_segments(direction: str, key: str) -> str:
    return (
        f"(!has(r.{direction}) || r.{direction}.all(t, !has(t.{key}) || t.{key}.all(p, "
        "!has(p.segment) || self.segments.exists(g, g.name == p.segment))))"
    )


# Messages that name the offending value and its index. CEL's cost estimator treats the
# result of filter(), max(), join() and string(int) as unbounded (such a messageExpression
# is refused), while map(), indexOf() and indexing keep the bounds: so the first offender
# is found with map(...).indexOf(true), and an index is printed by looking it up in a
# literal list of its digits.
MAX_RULES = 32
INDEX = "[" + ", ".join(f"'{i}'" for i in range(MAX_RULES)) + "]"


def except_message() -> str:
    k = first("self.except", "e", "!isCIDR(e) || !cidr(self.cidr).containsCIDR(e)")
    return (
        f"'except[' + {INDEX}[{k}] + '] ' + "
        + quoted(f"self.except[{k}]")
        + " + ' is not a valid CIDR inside ' + self.cidr"
    )


def declared(value: str) -> str:
    """CEL: `value` names a segment of spec.segments."""
    return f"self.segments.exists(g, g.name == {value})"


def first(items: str, var: str, cond: str) -> str:
    """CEL: the index of the first element of `items` for which `cond` (over `var`) holds."""
    return f"{items}.map({var}, {cond}).indexOf(true)"


def bad_peer(direction: str, key: str, r: str) -> str:
    """CEL: rule `r` has a `direction` peer naming an undeclared segment."""
    return (
        f"has({r}.{direction}) && {r}.{direction}.exists(t, has(t.{key}) && t.{key}.exists(p, "
        f"has(p.segment) && !{declared('p.segment')}))"
    )


def undeclared_segment_message() -> str:
    i = first("self.allow", "r", f"has(r.segments) && r.segments.exists(s, !{declared('s')})")
    j = first(f"self.allow[{i}].segments", "s", f"!{declared('s')}")
    return (
        f"'spec.allow[' + {INDEX}[{i}] + '].segments[' + {INDEX}[{j}] + ']: segment ' + "
        + quoted(f"self.allow[{i}].segments[{j}]")
        + " + ' is not declared in spec.segments'"
    )


def undeclared_peer_message(direction: str, key: str) -> str:
    i = first("self.allow", "r", bad_peer(direction, key, "r"))
    cond = f"has(t.{key}) && t.{key}.exists(p, has(p.segment) && !{declared('p.segment')})"
    j = first(f"self.allow[{i}].{direction}", "t", cond)
    peers = f"self.allow[{i}].{direction}[{j}].{key}"
    k = first(peers, "p", f"has(p.segment) && !{declared('p.segment')}")
    return (
        f"'spec.allow[' + {INDEX}[{i}] + '].{direction}[' + {INDEX}[{j}] + '].{key}[' + "
        f"{INDEX}[{k}] + '].segment: segment ' + "
        + quoted(f"{peers}[{k}].segment")
        + " + ' is not declared in spec.segments'"
    )


def spec_schema() -> Schema:
    return {
        "type": "object",
        "description": "The segments, how namespaces join them, and what may cross.",
        "required": ["segments"],
        "properties": {
            "namespaceLabel": string(
                "The namespace label whose value names the namespace's segment.",
                default="environment",
                maxLength=317,
                pattern=LABEL_KEY,
            ),
            "enforcement": string(
                "Default for every segment. Enforce writes the policies; Audit writes nothing "
                "and reports what Enforce would change; Off removes the policies.",
                enum=["Enforce", "Audit", "Off"],
                default="Enforce",
            ),
            "isolate": {
                "type": "array",
                "description": "The directions the default-deny policy closes.",
                "default": ["Ingress", "Egress"],
                "minItems": 1,
                "maxItems": 2,
                "x-kubernetes-list-type": "set",
                "items": {"type": "string", "enum": ["Ingress", "Egress"]},
            },
            "segments": {
                "type": "array",
                "description": "The segments (environments). Names are unique.",
                "minItems": 1,
                "maxItems": 12,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "description": "A segment: the namespaces whose namespaceLabel has this name.",
                    "required": ["name"],
                    "properties": {
                        "name": string(
                            "The segment's name, and the label value that puts a namespace in "
                            "it. A DNS label.",
                            maxLength=63,
                            pattern=DNS_LABEL,
                        ),
                        "enforcement": string(
                            "Overrides spec.enforcement for this segment (for a safe rollout).",
                            enum=["Enforce", "Audit", "Off"],
                        ),
                        "namespaceSelector": selector(
                            "Extra conditions a labelled namespace must meet to join the segment."
                        ),
                    },
                },
            },
            "sameSegment": string(
                "Allow: namespaces of one segment may talk to each other. Deny: only what "
                "spec.allow permits.",
                enum=["Allow", "Deny"],
                default="Allow",
            ),
            "dns": {
                "type": "object",
                "description": "Egress to the cluster DNS (only when Egress is isolated).",
                "default": {},
                "properties": {
                    "enabled": {
                        "type": "boolean",
                        "description": "Write the envisolation-dns policy.",
                        "default": True,
                    },
                    "namespace": string(
                        "Namespace of the DNS pods.",
                        default="kube-system",
                        maxLength=63,
                        pattern=DNS_LABEL,
                    ),
                    "podSelector": {
                        **selector("The DNS pods."),
                        "default": {"matchLabels": {"k8s-app": "kube-dns"}},
                    },
                    "ports": {
                        "type": "array",
                        "description": "DNS ports (default UDP and TCP 53).",
                        "maxItems": 8,
                        "default": [
                            {"protocol": "UDP", "port": 53},
                            {"protocol": "TCP", "port": 53},
                        ],
                        "items": port("A DNS port."),
                    },
                },
            },
            "allow": {
                "type": "array",
                "description": "The allow-list. Each rule becomes one NetworkPolicy "
                "envisolation-allow-<name> in every namespace of its segments.",
                "maxItems": MAX_RULES,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "description": "One allow rule: the pods it selects and what they may "
                    "receive (ingress) or send (egress).",
                    "required": ["name"],
                    "properties": {
                        "name": string(
                            "The rule's name, unique; the policy is envisolation-allow-<name>.",
                            maxLength=44,
                            pattern=DNS_LABEL,
                        ),
                        "segments": {
                            "type": "array",
                            "description": "The segments whose namespaces get this rule "
                            "(default: all).",
                            "maxItems": 12,
                            "x-kubernetes-list-type": "set",
                            "items": {"type": "string", "maxLength": 63},
                        },
                        "podSelector": {
                            **selector("The pods the rule applies to (default: all pods)."),
                            "default": {},
                        },
                        "ingress": traffic("ingress", "from"),
                        "egress": traffic("egress", "to"),
                    },
                    "x-kubernetes-validations": [
                        rule(
                            "has(self.ingress) || has(self.egress)",
                            "a rule needs ingress or egress",
                            messageExpression="'rule ' + "
                            + quoted("self.name")
                            + " + ' needs ingress or egress'",
                        )
                    ],
                },
            },
            "excludeNamespaces": {
                "type": "array",
                "description": "Namespaces never touched. kube-system, kube-public, "
                "kube-node-lease and the operator's own namespace always are.",
                "maxItems": 256,
                "x-kubernetes-list-type": "set",
                "items": {"type": "string", "maxLength": 63, "pattern": DNS_LABEL},
            },
            "deletionPolicy": string(
                "When this resource is deleted: Orphan leaves every policy in place (fail "
                "closed); Delete removes them, allows first and the default-deny last.",
                enum=["Orphan", "Delete"],
                default="Orphan",
            ),
        },
        "x-kubernetes-validations": [
            rule(
                "!has(self.allow) || self.allow.all(r, !has(r.segments) || "
                "r.segments.all(s, self.segments.exists(g, g.name == s)))",
                "allow[].segments: every entry must name a segment declared in spec.segments",
                messageExpression=undeclared_segment_message(),
                fieldPath=".allow",
                reason="FieldValueInvalid",
            ),
            *(
                rule(
                    f"!has(self.allow) || self.allow.all(r, {peers_name_segments(d, key)})",
                    f"allow[].{d}[].{key}[].segment: every segment peer must name a segment "
                    "declared in spec.segments",
                    messageExpression=undeclared_peer_message(d, key),
                    fieldPath=".allow",
                    reason="FieldValueInvalid",
                )
                for d, key in (("ingress", "from"), ("egress", "to"))
            ),
        ],
    }


CONDITION = {
    "type": "object",
    "description": "A metav1.Condition.",
    "required": ["type", "status"],
    "properties": {
        "type": string("Ready, Conflict or Exposed."),
        "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
        "reason": string("A CamelCase reason."),
        "message": string("What happened, for a person."),
        "observedGeneration": {"type": "integer", "description": "The generation it is about."},
        "lastTransitionTime": string("When status last changed.", format="date-time"),
    },
}


def status_schema() -> Schema:
    return {
        "type": "object",
        "description": "What the operator did, written by it alone.",
        "properties": {
            "observedGeneration": {
                "type": "integer",
                "description": "The spec generation this status describes.",
            },
            "conditions": {
                "type": "array",
                "description": "Ready, Conflict and Exposed.",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": CONDITION,
            },
            "namespaces": {"type": "integer", "description": "Namespaces this resource owns."},
            "policies": {"type": "integer", "description": "NetworkPolicies it keeps."},
            "segmentNames": string("The segments, comma-separated (for kubectl get)."),
            "segments": {
                "type": "array",
                "description": "Per segment: enforcement, namespaces and how many are ready.",
                "items": {
                    "type": "object",
                    "description": "One segment's figures.",
                    "properties": {
                        "name": string("The segment."),
                        "enforcement": string("Its effective enforcement."),
                        "namespaces": {"type": "integer", "description": "Its namespaces."},
                        "ready": {
                            "type": "integer",
                            "description": "Those holding exactly their policies.",
                        },
                        "wouldApply": {
                            "type": "integer",
                            "description": "Audit: policies Enforce would create or update.",
                        },
                        "wouldDelete": {
                            "type": "integer",
                            "description": "Audit: policies Enforce would delete.",
                        },
                    },
                },
            },
            "conflicts": {
                "type": "array",
                "description": "Namespaces claimed by more than one EnvironmentIsolation "
                "(the first 20).",
                "items": {
                    "type": "object",
                    "description": "One conflict.",
                    "properties": {
                        "namespace": string("The namespace."),
                        "isolations": {
                            "type": "array",
                            "description": "Every EnvironmentIsolation that claims it.",
                            "items": {"type": "string"},
                        },
                        "owner": string("The oldest of them, which keeps its default-deny."),
                    },
                },
            },
            "conflictCount": {"type": "integer", "description": "All conflicts."},
            "exposures": {
                "type": "array",
                "description": "Cross-segment paths the spec does not allow (the first 20).",
                "items": {
                    "type": "object",
                    "description": "One exposure.",
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
            "exposureCount": {"type": "integer", "description": "All exposures."},
            "notIsolatable": {
                "type": "array",
                "description": "Pods in managed namespaces that use the host's network, as "
                "`segment: namespace/pod` (the first 20): NetworkPolicy does not apply to them.",
                "items": {"type": "string"},
            },
            "notIsolatableCount": {"type": "integer", "description": "All such pods."},
        },
    }


def crd() -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "environmentisolations.envisolation.io",
            "labels": {"app.kubernetes.io/name": "envisolation"},
        },
        "spec": {
            "group": "envisolation.io",
            "scope": "Cluster",
            "names": {
                "kind": "EnvironmentIsolation",
                "listKind": "EnvironmentIsolationList",
                "plural": "environmentisolations",
                "singular": "environmentisolation",
                "shortNames": ["enviso"],
                "categories": ["envisolation"],
            },
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Enforcement", "type": "string", "jsonPath": ".spec.enforcement"},
                        {"name": "Segments", "type": "string", "jsonPath": ".status.segmentNames"},
                        {"name": "Namespaces", "type": "integer", "jsonPath": ".status.namespaces"},
                        {"name": "Policies", "type": "integer", "jsonPath": ".status.policies"},
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Keeps a cluster's environments (segments) "
                            "network-isolated: a default-deny NetworkPolicy plus the declared "
                            "allow-list in every labelled namespace.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": string("The API version."),
                                "kind": string("The kind."),
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }
