#!/usr/bin/env python3
"""The issue-15 IMAP table: proxy (TLS upstream) vs an app doing IMAPS to dovecot directly.

  body.py ROUNDS COUNT MAILBOX TARGETS_JSON [FLAGS_PER_CLIENT]   -> JSON on stdout

TARGETS_JSON: [{"name": .., "port": .., "user": .., "pass": .., "ca": null|path,
                "pid": null|pid of the process in the middle}, ...]

For each round, each workload (full-body FETCH of COUNT messages, FLAGS round trips) and
each client count (1, 8), every target is measured once, the targets' order alternating
from round to round, so a burst of load from elsewhere hits all of them alike. Clients are
processes (no GIL between them), logged in and waiting on a barrier before the clock starts.
Reported per cell: the median of the rounds, for throughput and for the CPU the middle
process (utime + stime, /proc/PID/schedstat) spent on the workload, per MB moved.
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client import Conn, login  # noqa: E402

CLIENTS = (1, 8)
WORKLOADS = ("fetch", "flags")


def cpu_seconds(pid):
    """Time the process spent on a CPU, user and system (utime + stime), in nanoseconds
    from /proc/PID/schedstat: /proc/PID/stat counts 10 ms ticks, too coarse for a workload
    that costs the proxy ~60 ms."""
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0]) / 1e9


def worker(target, mailbox, count, workload, flags_n, ready, go, results):
    try:
        c = Conn("127.0.0.1", target["port"], target.get("ca"))
        login(c, target["user"], target["pass"], mailbox)
        ready.put(True)
        go.wait()
        t0 = time.perf_counter()
        if workload == "fetch":
            _, moved = c.cmd("FETCH 1:%d BODY.PEEK[]" % count)
            ops = count
        else:
            moved = 0
            for i in range(flags_n):
                _, n = c.cmd("FETCH %d FLAGS" % (i % count + 1))
                moved += n
            ops = flags_n
        t1 = time.perf_counter()
        c.cmd("LOGOUT")
        results.put({"start": t0, "end": t1, "bytes": moved, "ops": ops})
    except Exception as e:  # reported to the parent, which fails the run
        ready.put(False)
        results.put({"error": repr(e)})


def one(target, mailbox, count, workload, clients, flags_n):
    ctx = mp.get_context("fork")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=worker, args=(target, mailbox, count, workload, flags_n, ready, go, results))
             for _ in range(clients)]
    for p in procs:
        p.start()
    if not all(ready.get(timeout=120) for _ in procs):
        go.set()
    pid = target.get("pid")
    cpu0 = cpu_seconds(pid) if pid else None
    go.set()
    runs = [results.get(timeout=600) for _ in procs]
    cpu1 = cpu_seconds(pid) if pid else None
    for p in procs:
        p.join()
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        raise RuntimeError("%s: %s" % (target["name"], errors[0]))
    wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    moved = sum(r["bytes"] for r in runs)
    ops = sum(r["ops"] for r in runs)
    out = {"wall_s": wall, "bytes": moved, "ops": ops, "mb_per_s": moved / 1e6 / wall, "ops_per_s": ops / wall}
    if cpu0 is not None:
        out["middle_cpu_s"] = cpu1 - cpu0
        out["middle_cpu_ms_per_mb"] = (cpu1 - cpu0) * 1e3 / (moved / 1e6)
        out["middle_cpu_us_per_op"] = (cpu1 - cpu0) * 1e6 / ops
    return out


def main():
    rounds, count, mailbox = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    targets = json.loads(sys.argv[4])
    flags_n = int(sys.argv[5]) if len(sys.argv) > 5 else 5000
    samples = {}
    for rnd in range(rounds):
        for workload in WORKLOADS:
            for clients in CLIENTS:
                order = targets if rnd % 2 == 0 else list(reversed(targets))
                for t in order:
                    r = one(t, mailbox, count, workload, clients, flags_n)
                    samples.setdefault((t["name"], workload, clients), []).append(r)
                    print("round %d %-6s %d client(s) %-22s %8.1f MB/s %8.0f ops/s" % (
                        rnd + 1, workload, clients, t["name"], r["mb_per_s"], r["ops_per_s"]), file=sys.stderr)
    cells = []
    for (name, workload, clients), runs in samples.items():
        cell = {"target": name, "workload": workload, "clients": clients, "rounds": runs}
        for key in runs[0]:
            if isinstance(runs[0][key], float):
                cell["median_" + key] = statistics.median(r[key] for r in runs)
        cells.append(cell)
    print(json.dumps({"count": count, "flags_per_client": flags_n, "rounds": rounds, "cells": cells}))


if __name__ == "__main__":
    main()
