"""The operator's Deployment: one hardened container whose ports, probes and flags agree,
loopback-only sidecar addresses, what several replicas need, and the extra values it takes."""

import re

from .common import labels_match


def parse_args(argv):
    flags = {}
    for a in argv:
        m = re.match(r"^(--[a-z0-9-]+)(?:=(.*))?$", a)
        if m:
            flags.setdefault(m.group(1), []).append(m.group(2))
    return flags


class OperatorPod:
    """The operator's Deployment, its pod and its container, and the flags the container runs
    with. Reading it checks that there is one Deployment, with one container, that selects
    its own pods."""

    def __init__(self, rendered):
        f = rendered.f
        self.dep = dep = rendered.one("Deployment")
        pod = dep.get("spec", {}).get("template", {})
        self.pod_labels = pod_labels = pod.get("metadata", {}).get("labels", {})
        self.pod_spec = pod_spec = pod.get("spec", {})
        f.expect(labels_match(dep["spec"]["selector"]["matchLabels"], pod_labels), "Deployment selector does not match its pod labels")
        containers = pod_spec.get("containers", [])
        f.expect(len(containers) == 1, "operator pod must have one container")
        self.c = c = containers[0] if containers else {}
        self.flags = parse_args(c.get("args", []))
        self.port_names = {p["name"]: p["containerPort"] for p in c.get("ports", [])}

    def flag(self, name):
        """The last value the container gives `name`, None when it gives none."""
        return (self.flags.get(name) or [None])[-1]


def check_hardening(rendered, pod):
    f, set_name = rendered.f, rendered.set_name
    pod_spec, c, flag, port_names = pod.pod_spec, pod.c, pod.flag, pod.port_names
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


def check_sidecar_addresses(rendered, pod):
    f, set_name, flag = rendered.f, rendered.set_name, pod.flag
    # Sidecar: loopback only (DESIGN.md invariant 2).
    for a in ("--sidecar-smtp-addr", "--sidecar-imap-addr", "--sidecar-admin-addr"):
        f.expect((flag(a) or "").startswith("127.0.0.1:"), f"{a}={flag(a)} is not loopback")
    f.expect(flag("--sidecar-mode") in ("native", "container"), "--sidecar-mode missing")
    if set_name == "container-sidecar":
        f.expect(flag("--sidecar-mode") == "container", "container-sidecar set did not switch --sidecar-mode")


def check_replicas(rendered, pod):
    f, by_kind = rendered.f, rendered.by_kind
    dep, pod_spec, pod_labels, flag = pod.dep, pod.pod_spec, pod.pod_labels, pod.flag
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


def check_extras(rendered, pod):
    """The extras value set: extraEnv, extraVolumes, extraVolumeMounts and the log levels."""
    f, set_name = rendered.f, rendered.set_name
    pod_spec, c, flag = pod.pod_spec, pod.c, pod.flag
    if set_name == "extras":
        names = [e["name"] for e in c.get("env", [])]
        f.expect("HTTPS_PROXY" in names and names.count("POD_NAME") == 1, f"operator.extraEnv: {names}")
        f.expect(any(v["name"] == "corp-ca" for v in pod_spec.get("volumes", [])), "operator.extraVolumes not rendered")
        f.expect(any(m["mountPath"] == "/etc/corp-ca" for m in c.get("volumeMounts", [])), "operator.extraVolumeMounts not rendered")
        f.expect(flag("--log-level") == "debug", "operator.logLevel not rendered")
        f.expect("--sidecar-env=RUST_LOG=warn" in c.get("args", []), "sidecar.logLevel not rendered")
