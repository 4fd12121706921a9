#!/usr/bin/env python3
"""Checks the chart's observability assets against each other and against real scrapes.

  rules-check.py dashboard            the Grafana dashboard is well-formed (ids, grid, queries)
  rules-check.py names                print the metric names the alerts and the dashboard use
  rules-check.py scrape PREFIX FILE   every name with PREFIX that the alerts or the dashboard
                                      use is a series in FILE (a /metrics scrape of the real
                                      binary: e2e/local/run.py passes the sidecar's)

Names come from the PromQL of charts/mailcred/files/alerts.yaml and
charts/mailcred/dashboards/mailcred.json. Series from other exporters (kube-state-metrics,
the API server) are not ours to check.
"""

import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent / "mailcred"
ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARD = CHART / "dashboards" / "mailcred.json"
NAME = re.compile(r"\b(mailcred_[a-z0-9_]+|kube_[a-z0-9_]+|apiserver_[a-z0-9_]+)\b")


def queries():
    """(where, PromQL) of every alert and dashboard query."""
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule['alert']}", rule["expr"]
    dash = json.loads(DASHBOARD.read_text())
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        if isinstance(q, dict):
            yield f"variable {var['name']}", q.get("query", "")


def names():
    used = {}
    for where, expr in queries():
        # Label values ("calling_webhook_error") are not metric names.
        for name in NAME.findall(re.sub(r'"[^"]*"', '""', expr)):
            used.setdefault(name, where)
    return used


def scraped(path):
    out = set()
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            out.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return out


def check_scrape(prefix, path):
    have = scraped(path)
    missing = {n: w for n, w in names().items() if n.startswith(prefix) and n not in have}
    for name, where in sorted(missing.items()):
        print(f"{name} (used by {where}) is not in the scrape {path}", file=sys.stderr)
    used = [n for n in names() if n.startswith(prefix)]
    if not used:
        print(f"no metric with prefix {prefix} is used: nothing was checked", file=sys.stderr)
        return 1
    print(f"{len(used)} names with prefix {prefix} used, all present" if not missing else "")
    return 1 if missing else 0


def check_dashboard():
    dash = json.loads(DASHBOARD.read_text())
    errors = []
    for key in ("title", "uid", "panels", "schemaVersion", "templating"):
        if key not in dash:
            errors.append(f"dashboard lacks {key}")
    ids = [p.get("id") for p in dash.get("panels", [])]
    if len(ids) != len(set(ids)) or None in ids:
        errors.append(f"panel ids missing or repeated: {ids}")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    occupied = set()
    for p in dash.get("panels", []):
        g = p.get("gridPos", {})
        if not all(k in g for k in ("h", "w", "x", "y")) or g["x"] + g["w"] > 24:
            errors.append(f"panel {p.get('title')!r}: gridPos {g} is not on the 24-column grid")
            continue
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        if cells & occupied:
            errors.append(f"panel {p.get('title')!r} overlaps another")
        occupied |= cells
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"panel {p.get('title')!r} does not use the $datasource variable")
        if not p.get("targets"):
            errors.append(f"panel {p.get('title')!r} has no query")
        for t in p.get("targets", []):
            for var in re.findall(r"\$([a-z_]+)", t.get("expr", "")):
                if var not in variables and not var.startswith("__"):
                    errors.append(f"panel {p.get('title')!r} uses undefined ${var}")
            if t["expr"].count("(") != t["expr"].count(")"):
                errors.append(f"panel {p.get('title')!r}: unbalanced parentheses in {t['expr']}")
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


def main():
    if sys.argv[1:] == ["dashboard"]:
        return check_dashboard()
    if sys.argv[1:] == ["names"]:
        for name, where in sorted(names().items()):
            print(f"{name}\t{where}")
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "scrape":
        return check_scrape(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
