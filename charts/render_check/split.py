"""`render-check.py split`: the built-in kinds only, for kubernetes-validate."""

from pathlib import Path

import yaml

from .common import load

# Kinds served by CRDs of other projects: kubernetes-validate has no schema for them, so they
# are split off and checked here against what they reference.
FOREIGN_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
}


def split(rendered, out):
    docs = [d for d in load(rendered) if (d.get("apiVersion"), d.get("kind")) not in FOREIGN_KINDS]
    Path(out).write_text(yaml.safe_dump_all(docs, sort_keys=False))
