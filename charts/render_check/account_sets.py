"""The accountSets objects (charts/tests/values-account-sets.yaml)."""

import yaml

from .common import REPO


def is_account_set(d):
    return "mailcred.io/account-set" in d.get("metadata", {}).get("labels", {})


def check_account_sets(docs, f, set_name):
    """The accountSets objects: in the entry's namespace (not the release's), binding only the
    entry's ServiceAccount, never update/patch; their CEL is evaluated by vap-check.py."""
    values = yaml.safe_load((REPO / "charts" / "tests" / "values-account-sets.yaml").read_text())
    entries = values["accountSets"] if set_name == "account-sets" else []
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    for kind in ("Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        f.expect(len(kinds.get(kind, [])) == len(entries), f"[{set_name}] {len(kinds.get(kind, []))} account-set {kind}s for {len(entries)} entries")
    for e in entries:
        roles = [r for r in kinds.get("Role", []) if r["metadata"]["namespace"] == e["namespace"]]
        f.expect(len(roles) == 1, f"no account-set Role in {e['namespace']}")
        for r in roles:
            verbs = {v for rule in r["rules"] for v in rule["verbs"]}
            f.expect(not verbs & {"update", "patch", "deletecollection", "*"}, f"account-set Role grants {verbs}")
        binds = [b for b in kinds.get("RoleBinding", []) if b["metadata"]["namespace"] == e["namespace"]]
        f.expect(binds and binds[0]["subjects"] == [{"kind": "ServiceAccount", "name": e["serviceAccount"], "namespace": e["namespace"]}], f"account-set RoleBinding in {e['namespace']} binds someone else")
