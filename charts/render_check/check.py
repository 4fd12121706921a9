"""`render-check.py check`: every group of checks on one value set, failures on stderr."""

import sys

from .account_sets import check_account_sets, is_account_set
from .common import NAMESPACE, Failures, Rendered, load
from .linkpage import check_linkpage, is_linkpage
from .monitoring import check_metrics_targets, check_monitoring
from .operator_flags import check_operator_flags
from .operator_pod import OperatorPod, check_extras, check_hardening, check_replicas, check_sidecar_addresses
from .rbac import check_rbac
from .webhook import check_tls, check_webhook

# What each value set of check.sh must (True) or must not (False) render.
EXPECT = {
    "default": {"ServiceMonitor": False, "NetworkPolicy": False, "Certificate": False, "PodDisruptionBudget": True},
    "service-monitor": {"ServiceMonitor": True},
    "network-policy": {"NetworkPolicy": True},
    "cert-manager": {"Certificate": True, "Issuer": True},
    "cert-manager-issuer": {"Certificate": True, "Issuer": False},
    "container-sidecar": {},
    "sidecar-settings": {},
    "single-replica": {"PodDisruptionBudget": False},
    "hard-anti-affinity": {},
    "existing-service-account": {"ServiceAccount": False, "PodDisruptionBudget": False},
    "monitoring": {"ServiceMonitor": True, "PodMonitor": True, "PrometheusRule": True, "ConfigMap": True},
    "openshift-restricted": {},
    "extras": {},
    "optional-off": {"PodMonitor": False},
    "linkpage": {},
    "account-sets": {},  # its objects: check_account_sets
}


def check_expected_kinds(rendered):
    f, set_name, by_kind, docs = rendered.f, rendered.set_name, rendered.by_kind, rendered.docs
    for kind, wanted in EXPECT.get(set_name, {}).items():
        f.expect(bool(by_kind.get(kind)) == wanted, f"[{set_name}] {kind} rendered: {bool(by_kind.get(kind))}, expected {wanted}")

    for d in docs:
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "CustomResourceDefinition"):
            f.expect(d["metadata"].get("namespace") == NAMESPACE, f"{d['kind']} {d['metadata']['name']} is not in the release namespace")


def check(rendered_path, set_name):
    """Exit status: 1 when any check failed, else 0."""
    f = Failures()
    docs = load(rendered_path)
    check_linkpage([d for d in docs if is_linkpage(d)], f, set_name)
    docs = [d for d in docs if not is_linkpage(d)]
    check_account_sets([d for d in docs if is_account_set(d)], f, set_name)
    docs = [d for d in docs if not is_account_set(d)]
    rendered = Rendered(docs, f, set_name)
    # In the order the failures were always reported in.
    check_expected_kinds(rendered)
    pod = OperatorPod(rendered)
    check_hardening(rendered, pod)
    check_sidecar_addresses(rendered, pod)
    check_replicas(rendered, pod)
    mwc = check_webhook(rendered, pod)
    cr, role = check_rbac(rendered, pod)
    check_tls(rendered, pod, mwc, cr, role)
    check_metrics_targets(rendered, pod)
    check_monitoring(rendered, pod)
    check_extras(rendered, pod)
    warnings = check_operator_flags(rendered, pod)
    for w in warnings:
        print(w)
    for item in f.items:
        print(item, file=sys.stderr)
    return 1 if f.items else 0
