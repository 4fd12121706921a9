#!/usr/bin/env python3
"""SMTP load for bench/smtp/run.sh: N messages of SIZE bytes from C concurrent clients.

Modes
  plain   new plaintext connection per message, no AUTH (the app talking to the sidecar or
          to a local Postfix relay)
  direct  new STARTTLS connection + AUTH per message (an app submitting directly)
  pooled  one STARTTLS+AUTH connection per client, reused (upstream's own per-message latency)
  plain-pooled  one plaintext connection per client, reused (the sidecar's added latency,
          compared with `pooled` straight to upstream)

Prints one JSON object: sent, failed, seconds_to_accept, seconds_to_delivery, msgs_per_s
(to delivery; to acceptance with --no-delivery, for an upstream that discards), accepted_per_s,
p50_ms, p99_ms (client-seen latency per message).
"""
import argparse, json, os, smtplib, ssl, threading, time


def maildir_count(path):
    try:
        return len(os.listdir(os.path.join(path, "new"))) + len(os.listdir(os.path.join(path, "cur")))
    except FileNotFoundError:
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["plain", "direct", "pooled", "plain-pooled"], required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls-host", default="localhost")
    ap.add_argument("--ca")
    ap.add_argument("--user")
    ap.add_argument("--password-file")
    ap.add_argument("--sender", required=True)
    ap.add_argument("--rcpt", required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-c", type=int, default=8)
    ap.add_argument("--size", type=int, default=10 * 1024)
    ap.add_argument("--label", default="bench")
    ap.add_argument("--delivery-timeout", type=float, default=600)
    ap.add_argument("--no-delivery", action="store_true",
                    help="do not wait for the maildir (the upstream discards): delivered = accepted")
    a = ap.parse_args()

    password = open(a.password_file).read().strip() if a.password_file else None
    ctx = ssl.create_default_context(cafile=a.ca) if a.ca else None
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456\r\n"

    def message(i):
        head = (f"From: <{a.sender}>\r\nTo: <{a.rcpt}>\r\nSubject: {a.label} {i}\r\n"
                f"Message-ID: <{a.label}-{i}-{time.time_ns()}@bench.local>\r\n\r\n").encode()
        body = line * ((a.size - len(head)) // len(line) + 1)
        return (head + body)[: a.size]

    def connect():
        if a.mode in ("plain", "plain-pooled"):
            return smtplib.SMTP(a.host, a.port, local_hostname="bench.local", timeout=120)
        s = smtplib.SMTP(a.tls_host, a.port, local_hostname="bench.local", timeout=120)
        s.starttls(context=ctx)
        s.login(a.user, password)
        return s

    before = maildir_count(a.maildir)
    latencies, failures = [], []
    lock = threading.Lock()
    counter = iter(range(a.n))
    counter_lock = threading.Lock()

    def worker():
        reuse = a.mode in ("pooled", "plain-pooled")
        conn = connect() if reuse else None
        while True:
            with counter_lock:
                i = next(counter, None)
            if i is None:
                break
            data = message(i)
            t0 = time.perf_counter()
            try:
                if reuse:
                    conn.sendmail(a.sender, [a.rcpt], data)
                else:
                    s = connect()
                    s.sendmail(a.sender, [a.rcpt], data)
                    s.quit()
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
            except Exception as e:  # counted, reported
                with lock:
                    failures.append(repr(e)[:200])
        if conn:
            conn.quit()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(a.c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = time.perf_counter() - start
    target = before + len(latencies)
    deadline = time.perf_counter() + a.delivery_timeout
    while not a.no_delivery and maildir_count(a.maildir) < target and time.perf_counter() < deadline:
        time.sleep(0.02)
    delivered = time.perf_counter() - start
    got = len(latencies) if a.no_delivery else maildir_count(a.maildir) - before
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else None
    print(json.dumps({
        "mode": a.mode, "label": a.label, "sent": len(latencies), "failed": len(failures),
        "failures": failures[:3], "delivered": got,
        "seconds_to_accept": round(accepted, 3), "seconds_to_delivery": round(delivered, 3),
        "msgs_per_s": round(got / delivered, 1) if delivered else None,
        "accepted_per_s": round(len(latencies) / accepted, 1) if accepted else None,
        "p50_ms": round(pct(0.50), 2) if latencies else None,
        "p99_ms": round(pct(0.99), 2) if latencies else None,
    }))


if __name__ == "__main__":
    main()
