#!/usr/bin/env python3
"""Checks a `helm template` output of the mailcred chart for what schema validation cannot see:
names the operator's flags and the manifests must agree on, the hardening, least-privilege
RBAC, and that each value set renders what it is for.

  render-check.py split RENDERED OUT   write the built-in kinds only (for kubernetes-validate)
  render-check.py check RENDERED SET   run the checks; SET names the value set (check.sh)

When operator/src/config.rs exists, every flag the chart passes must be one of its clap flags.
When MAILCRED_OPERATOR_BIN names a built mailcred-operator, it is run with the rendered flags
(and no cluster to reach): it must get past flag parsing and validation (clap and
Config::validate exit with status 2; a missing cluster is status 1).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# Kinds served by CRDs of other projects: kubernetes-validate has no schema for them, so they
# are split off and checked here against what they reference.
FOREIGN_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
}
# Flags the chart renders only when their values are set and that the operator does not have
# yet (reported as WARN, not failed, until it does; see the chart README).
PENDING_OPERATOR_FLAGS = {
    "--sidecar-cache-ttl-seconds",
    "--sidecar-trusted-kms-endpoint",
    "--sidecar-env",
}
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
CONTRACT = REPO / "core" / "src" / "sidecar_contract.rs"
ALERTS = REPO / "charts" / "mailcred" / "files" / "alerts.yaml"
DASHBOARD = REPO / "charts" / "mailcred" / "dashboards" / "mailcred.json"
HELPERS = REPO / "charts" / "mailcred" / "templates" / "_helpers.tpl"


def contract():
    """The string constants of core/src/sidecar_contract.rs, and its RESERVED_ENV values."""
    src = CONTRACT.read_text()
    consts = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]*)";', src))
    block = src[src.index("pub const RESERVED_ENV"):]
    block = block[:block.index("];")]
    reserved = [consts[n] for n in re.findall(r"\b(ENV_[A-Z_]+)\b", block)]
    return consts, reserved
NAMESPACE = "mailcred-system"


class Failures:
    def __init__(self):
        self.items = []

    def expect(self, cond, message):
        if not cond:
            self.items.append(message)
        return cond


def load(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def split(rendered, out):
    docs = [d for d in load(rendered) if (d.get("apiVersion"), d.get("kind")) not in FOREIGN_KINDS]
    Path(out).write_text(yaml.safe_dump_all(docs, sort_keys=False))


def parse_args(argv):
    flags = {}
    for a in argv:
        m = re.match(r"^(--[a-z0-9-]+)(?:=(.*))?$", a)
        if m:
            flags.setdefault(m.group(1), []).append(m.group(2))
    return flags


def operator_flags():
    """Long flags of mailcred-operator's clap structs, or None when the source is absent."""
    src = REPO / "operator" / "src" / "config.rs"
    if not src.exists():
        return None
    flags, pending_long = set(), None
    for line in src.read_text().splitlines():
        s = line.strip()
        if s.startswith("#[arg(") or s.startswith("#[command("):
            m = re.search(r'long\s*=\s*"([a-z0-9-]+)"', s)
            pending_long = m.group(1) if m else ("" if "long" in s else None)
            continue
        m = re.match(r"pub ([a-z0-9_]+):", s)
        if m and pending_long is not None:
            flags.add("--" + (pending_long or m.group(1).replace("_", "-")))
            pending_long = None
    return flags


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


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


def check(rendered, set_name):
    f = Failures()
    docs = load(rendered)
    check_linkpage([d for d in docs if is_linkpage(d)], f, set_name)
    docs = [d for d in docs if not is_linkpage(d)]
    check_account_sets([d for d in docs if is_account_set(d)], f, set_name)
    docs = [d for d in docs if not is_account_set(d)]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def one(kind):
        items = by_kind.get(kind, [])
        f.expect(len(items) == 1, f"expected exactly one {kind}, found {len(items)}")
        return items[0] if items else {}

    def named(kind, name):
        for d in by_kind.get(kind, []):
            if d["metadata"]["name"] == name:
                return d
        f.expect(False, f"no {kind} named {name!r}")
        return {}

    for kind, wanted in EXPECT.get(set_name, {}).items():
        f.expect(bool(by_kind.get(kind)) == wanted, f"[{set_name}] {kind} rendered: {bool(by_kind.get(kind))}, expected {wanted}")

    for d in docs:
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "CustomResourceDefinition"):
            f.expect(d["metadata"].get("namespace") == NAMESPACE, f"{d['kind']} {d['metadata']['name']} is not in the release namespace")

    dep = one("Deployment")
    pod = dep.get("spec", {}).get("template", {})
    pod_labels = pod.get("metadata", {}).get("labels", {})
    pod_spec = pod.get("spec", {})
    f.expect(labels_match(dep["spec"]["selector"]["matchLabels"], pod_labels), "Deployment selector does not match its pod labels")
    containers = pod_spec.get("containers", [])
    f.expect(len(containers) == 1, "operator pod must have one container")
    c = containers[0] if containers else {}
    flags = parse_args(c.get("args", []))
    flag = lambda name: (flags.get(name) or [None])[-1]  # noqa: E731
    port_names = {p["name"]: p["containerPort"] for p in c.get("ports", [])}

    # Hardening (Pod Security "restricted"; the UID may be left to the platform, never root).
    psc, csc = pod_spec.get("securityContext", {}), c.get("securityContext", {})
    f.expect(csc.get("runAsNonRoot") is True or psc.get("runAsNonRoot") is True, "runAsNonRoot not set")
    f.expect(psc.get("runAsUser") != 0 and csc.get("runAsUser") != 0, "runAsUser is root")
    if set_name == "openshift-restricted":
        f.expect(not {"runAsUser", "runAsGroup", "fsGroup"} & set(psc), f"restricted SCC set still pins IDs: {psc}")
        f.expect(flag("--sidecar-run-as-user") == "unset", "sidecar.runAsUser=null did not render --sidecar-run-as-user=unset")
    else:
        f.expect(psc.get("runAsUser", 0) > 0, "pod runAsUser not set by default")
    f.expect(not any("hostPath" in v for v in pod_spec.get("volumes", [])), "hostPath volume")
    f.expect(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem not true")
    f.expect(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation not false")
    f.expect(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities do not drop ALL")
    f.expect(not csc.get("capabilities", {}).get("add"), "capabilities added")
    f.expect((csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", "seccomp is not RuntimeDefault")
    f.expect(not pod_spec.get("hostNetwork") and not pod_spec.get("hostPID"), "host namespaces used")
    res = c.get("resources", {})
    f.expect(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory"), "cpu/memory requests missing")
    f.expect(res.get("limits", {}).get("memory"), "memory limit missing")
    for probe in ("livenessProbe", "readinessProbe"):
        p = c.get(probe, {}).get("httpGet", {})
        f.expect(p.get("port") in port_names, f"{probe} port {p.get('port')!r} is not a container port")
    f.expect(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness must use /readyz")
    f.expect(flag("--metrics-addr") == f"0.0.0.0:{port_names.get('metrics')}", "--metrics-addr does not match the metrics port")
    f.expect(flag("--webhook-addr") == f"0.0.0.0:{port_names.get('webhook')}", "--webhook-addr does not match the webhook port")
    env = {e["name"]: e for e in c.get("env", [])}
    f.expect(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace", "POD_NAMESPACE not from the downward API")
    f.expect(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", "POD_NAME not from the downward API")

    # Sidecar: loopback only (DESIGN.md invariant 2).
    for a in ("--sidecar-smtp-addr", "--sidecar-imap-addr", "--sidecar-admin-addr"):
        f.expect((flag(a) or "").startswith("127.0.0.1:"), f"{a}={flag(a)} is not loopback")
    f.expect(flag("--sidecar-mode") in ("native", "container"), "--sidecar-mode missing")
    if set_name == "container-sidecar":
        f.expect(flag("--sidecar-mode") == "container", "container-sidecar set did not switch --sidecar-mode")

    # Replicas, leader election, anti-affinity, PDB.
    replicas = dep["spec"]["replicas"]
    if replicas > 1:
        f.expect(flag("--leader-elect") == "true", "several replicas without --leader-elect=true")
        anti = pod_spec.get("affinity", {}).get("podAntiAffinity", {})
        terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", []) + [
            t["podAffinityTerm"] for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
        ]
        f.expect(any(labels_match(t["labelSelector"]["matchLabels"], pod_labels) for t in terms), "no pod anti-affinity on the operator's own pods")
        f.expect(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "rollouts may drop a webhook replica")
        for pdb in by_kind.get("PodDisruptionBudget", []):
            f.expect(labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels), "PDB selector does not match the pods")
            f.expect(pdb["spec"]["minAvailable"] < replicas, "PDB minAvailable blocks every drain")

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

    def grants(rules, group, resource, verb, name=None):
        return any(
            group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
            and (name is None and not r.get("resourceNames") or name is not None and (not r.get("resourceNames") or name in r["resourceNames"]))
            for r in rules
        )

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

    # Metrics, ServiceMonitor, NetworkPolicy.
    metrics_svcs = [s for s in by_kind.get("Service", []) if any(p.get("targetPort") == "metrics" for p in s["spec"]["ports"])]
    for sm in by_kind.get("ServiceMonitor", []):
        hits = [s for s in metrics_svcs if labels_match(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        f.expect(len(hits) == 1, "ServiceMonitor selects no (or several) metrics Service")
        for ep in sm["spec"]["endpoints"]:
            f.expect(hits and any(p["name"] == ep["port"] for p in hits[0]["spec"]["ports"]), "ServiceMonitor port not on the Service")
        f.expect(sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE], "ServiceMonitor namespace")
    for np in by_kind.get("NetworkPolicy", []):
        f.expect(labels_match(np["spec"]["podSelector"]["matchLabels"], pod_labels), "NetworkPolicy selects no operator pod")
        ingress_ports = [p["port"] for r in np["spec"].get("ingress", []) for p in r.get("ports", [])]
        f.expect("webhook" in ingress_ports, "NetworkPolicy blocks the webhook")
        f.expect(set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}, "NetworkPolicy must restrict both directions")

    # Monitoring: the names the webhook writes (core/src/sidecar_contract.rs) are what the
    # PodMonitor selects; the PrometheusRule and dashboard are the files promtool and
    # rules-check.py test.
    consts, reserved = contract()
    metrics_port = flag("--sidecar-metrics-port")
    f.expect((metrics_port is None) == (set_name == "optional-off"), f"--sidecar-metrics-port={metrics_port} in [{set_name}]")
    if metrics_port is not None:
        f.expect(int(metrics_port) not in {int((flag(a) or ":0").rsplit(":", 1)[1]) for a in ("--sidecar-smtp-addr", "--sidecar-imap-addr", "--sidecar-admin-addr")}, "metrics port clashes")
    for pm in by_kind.get("PodMonitor", []):
        f.expect(pm["spec"]["selector"]["matchLabels"] == {consts["METRICS_POD_LABEL"]: "true"}, "PodMonitor selects another label than the webhook sets")
        f.expect([e["port"] for e in pm["spec"]["podMetricsEndpoints"]] == [consts["METRICS_PORT_NAME"]], "PodMonitor port is not the injected port's name")
        f.expect(all(e["path"] == consts["METRICS_PATH"] for e in pm["spec"]["podMetricsEndpoints"]), "PodMonitor path")
    for sm in by_kind.get("ServiceMonitor", []):
        if set_name == "monitoring":
            f.expect(sm["spec"]["endpoints"][0].get("relabelings") and sm["spec"]["endpoints"][0].get("metricRelabelings"), "ServiceMonitor relabelings not rendered")
    for pr in by_kind.get("PrometheusRule", []):
        want = yaml.safe_load(ALERTS.read_text())["groups"]
        got = pr["spec"]["groups"]
        f.expect([g["name"] for g in got] == [g["name"] for g in want], "PrometheusRule groups differ from files/alerts.yaml")
        for gw, gg in zip(want, got):
            for rw, rg in zip(gw["rules"], gg["rules"]):
                f.expect(rw["expr"] == rg["expr"] and rw["annotations"] == rg["annotations"], f"{rw['alert']} differs from files/alerts.yaml")
                f.expect(rg["labels"] == {**rw.get("labels", {}), **{"team": "platform"}, **rw.get("labels", {})}, f"{rw['alert']} labels {rg['labels']}")
    for cm in by_kind.get("ConfigMap", []):
        f.expect(json.loads(cm["data"]["mailcred.json"]) == json.loads(DASHBOARD.read_text()), "dashboard ConfigMap differs from dashboards/mailcred.json")
        f.expect(cm["metadata"]["labels"].get("grafana_dashboard") == "1", "dashboard ConfigMap lacks the grafana_dashboard label")
    if set_name == "default":
        chart_reserved = HELPERS.read_text().split('define "mailcred.sidecarReservedEnv" -}}', 1)[1].split("{{-", 1)[0].split()
        f.expect(sorted(chart_reserved) == sorted(reserved), f"_helpers.tpl reserved env {chart_reserved} != sidecar_contract RESERVED_ENV {reserved}")
    if set_name == "extras":
        names = [e["name"] for e in c.get("env", [])]
        f.expect("HTTPS_PROXY" in names and names.count("POD_NAME") == 1, f"operator.extraEnv: {names}")
        f.expect(any(v["name"] == "corp-ca" for v in pod_spec.get("volumes", [])), "operator.extraVolumes not rendered")
        f.expect(any(m["mountPath"] == "/etc/corp-ca" for m in c.get("volumeMounts", [])), "operator.extraVolumeMounts not rendered")
        f.expect(flag("--log-level") == "debug", "operator.logLevel not rendered")
        f.expect("--sidecar-env=RUST_LOG=warn" in c.get("args", []), "sidecar.logLevel not rendered")

    # Flags must exist in the operator (when its source is here).
    known = operator_flags()
    warnings = []
    if known is not None:
        for name in sorted(flags):
            if name not in known:
                if name in PENDING_OPERATOR_FLAGS:
                    warnings.append(f"WARN operator has no {name} yet (rendered for this value set)")
                else:
                    f.expect(False, f"mailcred-operator has no flag {name} (operator/src/config.rs)")
    binary = os.environ.get("MAILCRED_OPERATOR_BIN")
    if binary:
        argv = [a for a in c.get("args", []) if a.split("=", 1)[0] not in PENDING_OPERATOR_FLAGS or (known is not None and a.split("=", 1)[0] in known)]
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
        env["HOME"] = "/nonexistent"
        for name in ("POD_NAMESPACE", "POD_NAME"):
            env[name] = "mailcred-system" if name == "POD_NAMESPACE" else "mailcred-operator-0"
        try:
            run = subprocess.run([binary, *argv], env=env, capture_output=True, text=True, timeout=20)
            f.expect(run.returncode == 1 and "invalid flags" not in run.stderr + run.stdout,
                     f"{binary} refused the rendered flags (exit {run.returncode}): {(run.stderr or run.stdout).strip()[-600:]}")
        except subprocess.TimeoutExpired:
            f.expect(False, f"{binary} did not exit within 20 s without a cluster")
    for w in warnings:
        print(w)
    for item in f.items:
        print(item, file=sys.stderr)
    return 1 if f.items else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "split":
        split(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        return check(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
