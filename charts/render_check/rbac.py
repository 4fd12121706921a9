"""The operator's RBAC: least privilege, bound to its own ServiceAccount, holding what it
grants (no escalate) and naming the lease it uses."""

from .common import NAMESPACE


def grants(rules, group, resource, verb, name=None):
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
        and (name is None and not r.get("resourceNames") or name is not None and (not r.get("resourceNames") or name in r["resourceNames"]))
        for r in rules
    )


def check_rbac(rendered, pod):
    """Returns the operator's ClusterRole and Role ({} for one that is missing)."""
    f, set_name, by_kind, one, named = rendered.f, rendered.set_name, rendered.by_kind, rendered.one, rendered.named
    dep, pod_spec, flag = pod.dep, pod.pod_spec, pod.flag
    # RBAC: least privilege, and the names the operator uses.
    sa_name = pod_spec.get("serviceAccountName")
    for b in by_kind.get("ClusterRoleBinding", []) + by_kind.get("RoleBinding", []):
        f.expect(b["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}], f"{b['kind']} binds someone else than {sa_name}")
    if by_kind.get("ServiceAccount"):
        f.expect(by_kind["ServiceAccount"][0]["metadata"]["name"] == sa_name, "ServiceAccount name differs from the pod's")
    cr = named("ClusterRole", dep["metadata"]["name"])
    role = one("Role")
    aggregated = [r for r in by_kind.get("ClusterRole", []) if r is not cr]
    f.expect(len(aggregated) == (0 if set_name == "optional-off" else 2), f"aggregated ClusterRoles: {len(aggregated)}")
    for agg in aggregated:
        labels = agg["metadata"].get("labels", {})
        f.expect(any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in labels), f"{agg['metadata']['name']} aggregates nowhere")
        f.expect(not any(b["roleRef"]["name"] == agg["metadata"]["name"] for b in by_kind.get("ClusterRoleBinding", [])), "aggregated role bound directly")
        for r in agg["rules"]:
            f.expect(r["apiGroups"] == ["mailcred.io"] and set(r["resources"]) <= {"mailcredentials", "mailcredentials/status"}, f"aggregated rule beyond MailCredentials: {r}")
        writes = {v for r in agg["rules"] for v in r["verbs"]} - {"get", "list", "watch"}
        if labels.get("rbac.authorization.k8s.io/aggregate-to-view") == "true":
            f.expect(not writes, f"the view role would gain {writes}")
    all_rules = cr.get("rules", []) + role.get("rules", [])
    for r in all_rules:
        f.expect("*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"], f"wildcard in {r}")
        # delete: only the lifetime GC's, on mailcredentials (an expired one is deleted).
        gc = r is not None and r.get("apiGroups") == ["mailcred.io"] and r.get("resources") == ["mailcredentials"] and r["verbs"] == ["delete"] and r in cr.get("rules", [])
        dangerous = {"escalate", "bind", "impersonate", "deletecollection"} | (set() if gc else {"delete"})
        f.expect(not dangerous & set(r["verbs"]), f"dangerous verb in {r}")
    for r in cr.get("rules", []):
        f.expect(not {"secrets", "pods", "serviceaccounts", "pods/exec"} & set(r["resources"]), f"cluster-wide access to {r['resources']}")

    # The per-credential Roles grant get/list/watch on mailcredentials: without escalate the
    # operator must hold exactly those verbs itself, unrestricted by name.
    for verb in ("get", "list", "watch"):
        f.expect(grants(cr.get("rules", []), "mailcred.io", "mailcredentials", verb), f"ClusterRole lacks mailcredentials {verb} (needed to create per-credential Roles)")
    for verb in ("list", "watch", "create", "patch"):
        for res_ in ("roles", "rolebindings"):
            f.expect(grants(cr.get("rules", []), "rbac.authorization.k8s.io", res_, verb), f"ClusterRole lacks {res_} {verb}")
    f.expect(grants(cr.get("rules", []), "mailcred.io", "mailcredentials/status", "patch"), "ClusterRole lacks mailcredentials/status patch")
    f.expect(grants(cr.get("rules", []), "events.k8s.io", "events", "create"), "ClusterRole lacks events create")
    lease = flag("--lease-name")
    f.expect(grants(role.get("rules", []), "coordination.k8s.io", "leases", "create"), "Role lacks leases create")
    for verb in ("get", "patch"):
        f.expect(grants(role.get("rules", []), "coordination.k8s.io", "leases", verb, lease), f"Role lacks leases {verb} on {lease}")
    return cr, role
