"""Where the API is and how to reach it: in-cluster config, else the kubeconfig."""

from __future__ import annotations

import ssl

from kubernetes import client, config


def load_config() -> client.Configuration:
    """In-cluster config when running in a Pod, else the current kubeconfig."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    return cfg


def ssl_context(cfg: client.Configuration) -> ssl.SSLContext | bool:
    """TLS as the kubeconfig (or the Pod's service account) says."""
    if not cfg.verify_ssl:
        return False
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    if cfg.assert_hostname is False:
        ctx.check_hostname = False
    return ctx
