"""The webhook: its Service and MutatingWebhookConfiguration agree with the operator's flags,
and its serving certificate comes from where --webhook-tls-mode says (self-signed by the
operator, or cert-manager)."""

from pathlib import Path

from .common import NAMESPACE, labels_match
from .rbac import grants


def check_webhook(rendered, pod):
    """Returns the MutatingWebhookConfiguration ({} when there is none by its flag's name)."""
    f, set_name, named = rendered.f, rendered.set_name, rendered.named
    pod_labels, flag = pod.pod_labels, pod.flag
    # Webhook Service and configuration agree with the operator's flags.
    svc = named("Service", flag("--webhook-service"))
    if svc:
        f.expect(labels_match(svc["spec"]["selector"], pod_labels), "webhook Service selects no operator pod")
        f.expect(any(p.get("targetPort") == "webhook" for p in svc["spec"]["ports"]), "webhook Service does not target the webhook port")
    mwc = named("MutatingWebhookConfiguration", flag("--webhook-config"))
    hooks = mwc.get("webhooks", [])
    f.expect(len(hooks) == 1, "expected one webhook")
    for h in hooks:
        cc = h["clientConfig"]["service"]
        f.expect(cc["name"] == flag("--webhook-service") and cc["namespace"] == NAMESPACE, "webhook clientConfig points elsewhere")
        f.expect(cc.get("path") == "/mutate", "webhook path is not /mutate")
        f.expect(svc and any(p["port"] == cc.get("port") for p in svc["spec"]["ports"]), "webhook clientConfig port is not a Service port")
        f.expect(h["sideEffects"] == "None" and h["admissionReviewVersions"] == ["v1"], "sideEffects/admissionReviewVersions")
        f.expect(h.get("reinvocationPolicy") == "IfNeeded", "reinvocationPolicy is not IfNeeded")
        f.expect(h["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}], "webhook must see pod CREATE only")
        excluded = [
            e for e in h["namespaceSelector"].get("matchExpressions", [])
            if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "NotIn"
        ]
        f.expect(excluded and {"kube-system", NAMESPACE} <= set(excluded[0]["values"]), "namespaceSelector does not exclude kube-system and the release namespace")
        f.expect("caBundle" not in h["clientConfig"], "caBundle must come from the operator or cert-manager, not the chart")
        if set_name == "hard-anti-affinity":
            f.expect("matchConditions" not in h and h.get("objectSelector"), "objectSelector/matchConditions values ignored")
        else:
            conds = h.get("matchConditions", [])
            f.expect(conds and "mailcred.io/inject" in conds[0]["expression"], "no annotation matchCondition")
            f.expect(conds and "mailcred.io/account-set" in conds[0]["expression"], "account-set pods never reach the webhook")
    return mwc


def check_tls(rendered, pod, mwc, cr, role):
    """`cr` and `role` are the operator's ClusterRole and Role (rbac.check_rbac)."""
    f, by_kind = rendered.f, rendered.by_kind
    pod_spec, c, flag = pod.pod_spec, pod.c, pod.flag
    self_signed = flag("--webhook-tls-mode") == "self-signed"
    secret_rules = [r for r in role.get("rules", []) if "secrets" in r["resources"]]
    mwc_rules = [r for r in cr.get("rules", []) if "mutatingwebhookconfigurations" in r["resources"]]
    if self_signed:
        tls_secret = flag("--webhook-tls-secret")
        for verb in ("get", "update"):
            f.expect(grants(role.get("rules", []), "", "secrets", verb, tls_secret), f"Role lacks secrets {verb} on {tls_secret}")
        for r in secret_rules:
            f.expect(r["verbs"] == ["create"] or r.get("resourceNames") == [tls_secret], f"secrets rule too wide: {r}")
        f.expect(mwc_rules and all(r.get("resourceNames") == [flag("--webhook-config")] for r in mwc_rules), "webhook configuration access is not limited to its name")
        f.expect(not by_kind.get("Certificate"), "Certificate rendered in self-signed mode")
    else:
        f.expect(flag("--webhook-tls-mode") == "files", "cert-manager mode must run --webhook-tls-mode=files")
        f.expect(not secret_rules and not mwc_rules, "cert-manager mode needs no secrets or webhook configuration access")
        cert = next((d for d in by_kind.get("Certificate", []) if not d["spec"].get("isCA")), {})
        f.expect(cert, "no serving Certificate")
        if cert:
            svc_dns = f"{flag('--webhook-service')}.{NAMESPACE}.svc"
            f.expect(svc_dns in cert["spec"]["dnsNames"], f"Certificate lacks {svc_dns}")
            f.expect(mwc.get("metadata", {}).get("annotations", {}).get("cert-manager.io/inject-ca-from") == f"{NAMESPACE}/{cert['metadata']['name']}", "caBundle injection annotation does not name the Certificate")
            mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
            vols = {v["name"]: v.get("secret", {}).get("secretName") for v in pod_spec.get("volumes", [])}
            cert_dir = str(Path(flag("--webhook-cert-file") or "/nonexistent/x").parent)
            f.expect(any(vols.get(n) == cert["spec"]["secretName"] and p == cert_dir for n, p in mounts.items()), "Certificate Secret is not mounted where --webhook-cert-file points")
            f.expect(str(Path(flag("--webhook-key-file") or "").parent) == cert_dir, "--webhook-key-file is not in the mounted Secret")
