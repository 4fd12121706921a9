"""The registration page's objects (linkpage.enabled)."""

from .common import NAMESPACE, labels_match


def is_linkpage(d):
    return d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "linkpage"


def check_linkpage(docs, f, set_name):
    """The registration page: hardened pod, a Service that selects it, and RBAC of exactly
    get/list/watch/update/patch on mailcredentials (no secrets, no status, no KMS identity)."""
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    if set_name != "linkpage":
        f.expect(not docs, f"[{set_name}] linkpage objects rendered while disabled")
        return
    for kind in ("Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Ingress"):
        f.expect(len(kinds.get(kind, [])) == 1, f"linkpage: expected one {kind}")
    if any(len(kinds.get(k, [])) != 1 for k in ("Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")):
        return
    dep, svc, sa, cr, crb = (kinds[k][0] for k in ("Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"))
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    f.expect(labels_match(svc["spec"]["selector"], labels), "linkpage Service selects no linkpage pod")
    f.expect(labels_match(dep["spec"]["selector"]["matchLabels"], labels), "linkpage selector does not match its pods")
    spec = pod["spec"]
    f.expect(spec["serviceAccountName"] == sa["metadata"]["name"], "linkpage pod runs as another ServiceAccount")
    f.expect(not sa["metadata"].get("annotations"), "linkpage ServiceAccount must carry no cloud identity annotation")
    f.expect(crb["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}], "linkpage binding subject")
    f.expect(crb["roleRef"]["name"] == cr["metadata"]["name"], "linkpage binding names another role")
    f.expect(cr["rules"] == [{"apiGroups": ["mailcred.io"], "resources": ["mailcredentials"], "verbs": ["get", "list", "watch", "update", "patch"]}],
             f"linkpage ClusterRole is not exactly mailcredentials get/list/watch/update/patch: {cr['rules']}")
    c = spec["containers"][0]
    f.expect(not any(e.get("name", "").startswith("AWS_") for e in c.get("env", [])), "linkpage has AWS environment")
    sc = c.get("securityContext", {})
    f.expect(sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"], "linkpage container not hardened")
    keys = [a for a in c["args"] if a.startswith("--public-key=")]
    f.expect(len(keys) == 2 and keys[0].startswith("--public-key=aws:arn:") and keys[1] == "--public-key=local:/keys/key-1.pem", f"linkpage keys: {keys}")
    f.expect("@sha256:" in c["image"], "linkpage image digest ignored")
