"""Metrics: the Services, ServiceMonitor and NetworkPolicy around the operator's metrics
port, and the sidecar's: the PodMonitor against core/src/sidecar_contract.rs, the
PrometheusRule and dashboard against their files, the reserved env names."""

import json
import re

import yaml

from .common import NAMESPACE, REPO, labels_match

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


def check_metrics_targets(rendered, pod):
    f, by_kind, pod_labels = rendered.f, rendered.by_kind, pod.pod_labels
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


def check_monitoring(rendered, pod):
    f, set_name, by_kind, flag = rendered.f, rendered.set_name, rendered.by_kind, pod.flag
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
