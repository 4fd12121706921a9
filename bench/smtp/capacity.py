#!/usr/bin/env python3
"""SMTP through the sidecar against the upstream's own capacity (issue #15 item 5), for
bench/smtp/capacity.sh.

Baseline "pooled direct": C clients, each one authenticated STARTTLS connection straight to
postfix, reused for every message. Against it, in the same run and interleaved (the order
rotates per repetition), every sidecar build given with --sidecar in both app modes:
  per-message  a new plaintext app connection per message (latency: connect -> QUIT)
  reused       one app connection per client (latency: one sendmail)
For each upstream speed (--upstreams):
  lmtp     postfix delivers into dovecot by LMTP; throughput is to the maildir
  discard  postfix's discard transport (a quicker upstream); throughput is to acceptance
Medians over --reps repetitions. The sidecar's CPU per message is its utime+stime over the
run (from /proc) divided by the messages of the run; its run-queue wait per message is the
time its thread was runnable but not on a CPU (/proc/PID/schedstat), which tells a sidecar that
waits for a core from one that waits on its own work.

Prints a table per upstream and writes every repetition and the medians to --out (JSON).
"""
import argparse, json, os, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def schedstat(pid):
    """(ns on a CPU, ns runnable but waiting for one, times scheduled) of the main thread, which
    is the sidecar's one runtime thread."""
    with open(f"/proc/{pid}/schedstat") as f:
        run, wait, slices = (int(x) for x in f.read().split())
    return run, wait, slices


def postfix_transport(postfix_config, value=None):
    """Reads virtual_transport, or sets it to `value` and reloads postfix."""
    if value is None:
        return subprocess.run(["postconf", "-c", postfix_config, "-h", "virtual_transport"],
                              check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["postconf", "-c", postfix_config, "-e", f"virtual_transport = {value}"], check=True)
    subprocess.run(["postfix", "-c", postfix_config, "reload"], check=True, capture_output=True)
    time.sleep(1.0)  # the master restarts its services
    return value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sidecar", action="append", required=True, help="LABEL:PORT:PID")
    ap.add_argument("--direct-port", type=int, required=True)
    ap.add_argument("--postfix-config", required=True)
    ap.add_argument("--upstreams", default="lmtp,discard")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-c", type=int, default=8)
    ap.add_argument("--out", required=True)
    a, common = ap.parse_known_args()  # the rest goes to load.py
    sidecars = []
    for spec in a.sidecar:
        label, port, pid = spec.split(":")
        sidecars.append((label, int(port), int(pid)))
    paths = [("direct-pooled", "pooled", a.direct_port, None)]
    for label, port, pid in sidecars:
        paths.append((f"{label}/per-message", "plain", port, pid))
        paths.append((f"{label}/reused", "plain-pooled", port, pid))

    def load(mode, port, n, upstream, label):
        extra = ["--no-delivery"] if upstream == "discard" else []
        out = subprocess.run([sys.executable, os.path.join(HERE, "load.py"), *common, "--mode", mode,
                              "--port", str(port), "-n", str(n), "-c", str(a.c), "--label", label,
                              "--delivery-timeout", "120", *extra],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        if r["failed"] or r["delivered"] != r["sent"]:
            sys.exit(f"load run {label} failed or not all delivered: {out}")
        return r

    results = {"n": a.n, "clients": a.c, "reps": a.reps, "upstreams": {}}
    delivery = postfix_transport(a.postfix_config)  # the peers' LMTP into dovecot
    try:
        for upstream in a.upstreams.split(","):
            want = "discard:" if upstream == "discard" else delivery
            if postfix_transport(a.postfix_config) != want:
                postfix_transport(a.postfix_config, want)
            for name, mode, port, _ in paths:  # warm-up: pools, postfix processes
                load(mode, port, 40, upstream, "warm")
            reps = {name: [] for name, *_ in paths}
            for rep in range(a.reps):
                order = paths[rep % len(paths):] + paths[: rep % len(paths)]
                for name, mode, port, pid in order:
                    cpu0 = cpu_seconds(pid) if pid else None
                    sched0 = schedstat(pid) if pid else None
                    r = load(mode, port, a.n, upstream, name.replace("/", "-"))
                    if pid:
                        r["cpu_ms_per_msg"] = round((cpu_seconds(pid) - cpu0) * 1000 / r["sent"], 3)
                        _, wait, slices = (b - a for a, b in zip(sched0, schedstat(pid)))
                        r["runq_wait_ms_per_msg"] = round(wait / 1e6 / r["sent"], 3)
                        r["scheduled_per_msg"] = round(slices / r["sent"], 2)
                    reps[name].append(r)
                    print(f"[{upstream} rep {rep + 1}] {name}: {r['msgs_per_s']} msgs/s "
                          f"p50 {r['p50_ms']} p99 {r['p99_ms']}", file=sys.stderr)
            results["upstreams"][upstream] = summarize(reps)
    finally:
        if postfix_transport(a.postfix_config) != delivery:
            postfix_transport(a.postfix_config, delivery)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    print_tables(results)


def summarize(reps):
    med = lambda rs, k: round(statistics.median(r[k] for r in rs), 3) if all(k in r for r in rs) else None
    base = reps["direct-pooled"]
    base_rate, base_p50 = med(base, "msgs_per_s"), med(base, "p50_ms")
    summary = {}
    for name, rs in reps.items():
        rate = med(rs, "msgs_per_s")
        summary[name] = {
            "msgs_per_s": rate, "p50_ms": med(rs, "p50_ms"), "p99_ms": med(rs, "p99_ms"),
            "cpu_ms_per_msg": med(rs, "cpu_ms_per_msg"),
            "runq_wait_ms_per_msg": med(rs, "runq_wait_ms_per_msg"),
            "scheduled_per_msg": med(rs, "scheduled_per_msg"),
            "ratio": round(rate / base_rate, 3),
            # the ratio of each repetition to the baseline of the same repetition
            "ratios": [round(r["msgs_per_s"] / b["msgs_per_s"], 3) for r, b in zip(rs, base)],
            "added_p50_ms": round(med(rs, "p50_ms") - base_p50, 2),
            "runs": rs,
        }
    return summary


def print_tables(results):
    print(f"N={results['n']} messages of 10 KiB, {results['clients']} clients, "
          f"{results['reps']} interleaved repetitions, medians")
    for upstream, summary in results["upstreams"].items():
        what = "to the maildir" if upstream == "lmtp" else "to acceptance (postfix discards)"
        print(f"\nupstream: {upstream} (throughput {what})\n")
        print("| path | msgs/s | × pooled direct (per rep) | p50 ms | added p50 | p99 ms | sidecar CPU ms/msg "
              "| sidecar run-queue wait ms/msg | times scheduled/msg |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, s in summary.items():
            cells = ["" if s.get(k) is None else s[k]
                     for k in ("cpu_ms_per_msg", "runq_wait_ms_per_msg", "scheduled_per_msg")]
            ratios = ", ".join(f"{x:.2f}" for x in s["ratios"])
            print(f"| {name} | {s['msgs_per_s']} | **{s['ratio']:.2f}×** ({ratios}) | {s['p50_ms']} | "
                  f"{s['added_p50_ms']:+.2f} | {s['p99_ms']} | " + " | ".join(str(c) for c in cells) + " |")
    print("\ngoal: >= 0.95x pooled direct and <= +2 ms p50, both app modes, every upstream")


if __name__ == "__main__":
    main()
