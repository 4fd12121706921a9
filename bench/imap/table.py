#!/usr/bin/env python3
"""Prints body.py's JSON as the issue-15 table (ratios against the goals) and saves it.

  table.py BODY_JSON LOADAVG COMMIT OUT_JSON
"""
import json
import sys

GOAL = 0.95
PROXY, DIRECT, BASE = "proxy (TLS upstream)", "direct TLS", "proxy baseline"


def main():
    data = json.load(open(sys.argv[1]))
    data.update(loadavg=sys.argv[2], commit=sys.argv[3], goal_ratio=GOAL)
    cells = {(c["target"], c["workload"], c["clients"]): c for c in data["cells"]}
    print("load average: %s (2 cores), commit %s, %d interleaved rounds, medians" % (
        data["loadavg"], data["commit"], data["rounds"]))
    print("| workload | clients | proxy (TLS up) | direct TLS | ratio (goal >= %.2f) | proxy CPU |" % GOAL)
    print("|---|---|---|---|---|---|")
    summary = []
    for workload in ("fetch", "flags"):
        for clients in (1, 8):
            p, d = cells[(PROXY, workload, clients)], cells[(DIRECT, workload, clients)]
            key = "median_mb_per_s" if workload == "fetch" else "median_ops_per_s"
            unit = "MB/s" if workload == "fetch" else "round trips/s"
            ratio = p[key] / d[key]
            cpu = ("%.2f ms/MB" % p["median_middle_cpu_ms_per_mb"]) if workload == "fetch" else (
                "%.1f us/round trip" % p["median_middle_cpu_us_per_op"])
            met = "met" if ratio >= GOAL else "missed"
            label = "full-body FETCH %d x 50 KiB" % data["count"] if workload == "fetch" else (
                "FLAGS, %d per client" % data["flags_per_client"])
            print("| %s | %d | %.0f %s | %.0f %s | **%.2fx** %s | %s |" % (
                label, clients, p[key], unit, d[key], unit, ratio, met, cpu))
            row = {"workload": workload, "clients": clients, "proxy": p[key], "direct": d[key],
                   "ratio": ratio, "met": ratio >= GOAL,
                   "proxy_cpu_ms_per_mb": p["median_middle_cpu_ms_per_mb"],
                   "proxy_cpu_us_per_op": p["median_middle_cpu_us_per_op"]}
            b = cells.get((BASE, workload, clients))
            if b:
                row["baseline"] = b[key]
                row["baseline_cpu_ms_per_mb"] = b["median_middle_cpu_ms_per_mb"]
                row["baseline_cpu_us_per_op"] = b["median_middle_cpu_us_per_op"]
                print("|   baseline build | %d | %.0f %s (%.2fx direct; new/baseline %.2fx) | | | %.2f ms/MB, %.1f us/op |" % (
                    clients, b[key], unit, b[key] / d[key], p[key] / b[key],
                    b["median_middle_cpu_ms_per_mb"], b["median_middle_cpu_us_per_op"]))
            summary.append(row)
    data["summary"] = summary
    with open(sys.argv[4], "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print("JSON: %s" % sys.argv[4])


if __name__ == "__main__":
    main()
