"""Names, label keys and defaults: the settings that must agree everywhere live here."""

from __future__ import annotations

from typing import Final

GROUP: Final = "envisolation.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "environmentisolations"
KIND: Final = "EnvironmentIsolation"
API_VERSION: Final = f"{GROUP}/{VERSION}"

FIELD_MANAGER: Final = "envisolation"

LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "envisolation"
LABEL_ISOLATION: Final = "envisolation.io/isolation"
LABEL_SEGMENT: Final = "envisolation.io/segment"
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"

POLICY_DEFAULT_DENY: Final = "envisolation-default-deny"
POLICY_SAME_SEGMENT: Final = "envisolation-same-segment"
POLICY_DNS: Final = "envisolation-dns"
POLICY_ALLOW_PREFIX: Final = "envisolation-allow-"
MAX_RULE_NAME: Final = 63 - len(POLICY_ALLOW_PREFIX)

ALWAYS_EXCLUDED: Final = ("kube-node-lease", "kube-public", "kube-system")
DEFAULT_OPERATOR_NAMESPACE: Final = "envisolation-system"
DEFAULT_NAMESPACE_LABEL: Final = "environment"
DEFAULT_DNS_NAMESPACE: Final = "kube-system"
DEFAULT_DNS_POD_LABELS: Final = (("k8s-app", "kube-dns"),)

DEFAULT_RESYNC_SECONDS: Final = 600.0
STATUS_LIST_LIMIT: Final = 20
STATUS_MIN_INTERVAL_SECONDS: Final = 1.0
EVENT_SOURCE: Final = "envisolation"
FINALIZER: Final = f"{GROUP}/finalizer"  # held only with deletionPolicy Delete
