#!/usr/bin/env python3
"""Load and soak of one mailcred-sidecar against the real peers (not run by CI).

N concurrent SMTP clients (each: one connection, EHLO, then MAIL/RCPT/DATA in a loop) and
N concurrent IMAP clients (each: one connection, LOGIN, SELECT INBOX, then NOOP / STATUS in a
loop) through one sidecar, for a fixed duration. Reported: operations per second, p50/p99
latency per operation, the sidecar's RSS and open file descriptors sampled every few seconds
(RSS must be flat after warm-up), and a slowloris check: K extra clients that send one byte a
second must not slow the others (p99 of a probe client during the slowloris phase vs. before).

    MAILCRED_PEERS_ENV=/tmp/peers/env bench/load/load.py \
        --sidecar target/release/mailcred-sidecar --plugin target/debug/kubectl-mailcred \
        --duration 300 --smtp 200 --imap 200 --json bench/load/last-run.json
"""

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def read_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip().strip('"').strip("'")
    return env


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Stats:
    def __init__(self):
        self.lat = []        # seconds, per completed operation
        self.errors = 0
        self.error_kinds = {}
        self.ok = 0

    def fail(self, kind):
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def smtp_reply(r):
    """Reads one (multi-line) SMTP reply, returns (code, text)."""
    lines = []
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("closed")
        lines.append(line.decode(errors="replace").rstrip())
        if len(line) < 4 or line[3:4] != b"-":
            return int(lines[-1][:3]), "\n".join(lines)


async def smtp_client(i, port, user, stop, stats, think, rcpt=None):
    rcpt = rcpt or user
    while not stop.is_set():
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
            await asyncio.wait_for(smtp_reply(r), 30)
            w.write(b"EHLO load\r\n")
            await asyncio.wait_for(smtp_reply(r), 30)
            n = 0
            while not stop.is_set():
                n += 1
                body = (f"From: {user}\r\nTo: {rcpt}\r\nSubject: load {i}-{n}\r\n\r\n"
                        + "x" * 900 + "\r\n").encode()
                t0 = time.monotonic()
                w.write(f"MAIL FROM:<{user}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
                for _ in range(3):
                    code, text = await asyncio.wait_for(smtp_reply(r), 120)
                    if code >= 400:
                        break
                if code >= 400:
                    stats.fail(f"smtp {code}")
                    w.write(b"RSET\r\n")
                    await asyncio.wait_for(smtp_reply(r), 30)
                    await asyncio.sleep(think)
                    continue
                w.write(body + b".\r\n")
                code, text = await asyncio.wait_for(smtp_reply(r), 120)
                if code == 250:
                    stats.ok += 1
                    stats.lat.append(time.monotonic() - t0)
                else:
                    stats.fail(f"smtp {code}")
                await asyncio.sleep(think)
            w.write(b"QUIT\r\n")
            w.close()
        except (OSError, ConnectionError, asyncio.TimeoutError, ValueError) as e:
            stats.fail(type(e).__name__)
            await asyncio.sleep(1)


async def imap_cmd(r, w, tag, cmd):
    w.write(f"{tag} {cmd}\r\n".encode())
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("closed")
        if line.startswith(tag.encode() + b" "):
            return line.split(b" ", 2)[1].decode()


async def imap_client(i, port, stop, stats, think, direct=None):
    """Through the sidecar (LOGIN with any password), or with `direct` = (ssl context, user,
    password) straight to dovecot over TLS: the baseline the proxied clients are compared with."""
    while not stop.is_set():
        try:
            tls = direct[0] if direct else None
            r, w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None), 30)
            await asyncio.wait_for(r.readline(), 30)
            login = f'LOGIN "{direct[1]}" "{direct[2]}"' if direct else "LOGIN app x"
            if await asyncio.wait_for(imap_cmd(r, w, "l", login), 60) != "OK":
                stats.fail("imap login")
                await asyncio.sleep(1)
                continue
            if await asyncio.wait_for(imap_cmd(r, w, "s", "SELECT INBOX"), 60) != "OK":
                stats.fail("imap select")
                continue
            n = 0
            while not stop.is_set():
                n += 1
                cmd = "NOOP" if n % 2 else "STATUS INBOX (MESSAGES UNSEEN)"
                t0 = time.monotonic()
                status = await asyncio.wait_for(imap_cmd(r, w, f"c{n}", cmd), 60)
                if status == "OK":
                    stats.ok += 1
                    stats.lat.append(time.monotonic() - t0)
                else:
                    stats.fail(f"imap {status}")
                await asyncio.sleep(think)
            await imap_cmd(r, w, "z", "LOGOUT")
            w.close()
        except (OSError, ConnectionError, asyncio.TimeoutError, ValueError) as e:
            stats.fail(type(e).__name__)
            await asyncio.sleep(1)


async def slowloris(port, greeting_line, stop, counter):
    """Opens a connection and sends a command one byte per second, forever."""
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        if greeting_line:
            await r.readline()
        counter[0] += 1
        payload = b"EHLO " + b"s" * 10000 if port else b""
        i = 0
        while not stop.is_set():
            w.write(payload[i % len(payload):i % len(payload) + 1])
            await w.drain()
            i += 1
            await asyncio.sleep(1)
        w.close()
    except (OSError, ConnectionError):
        counter[1] += 1


def proc_sample(pid):
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    return rss, fds, threads


async def sampler(pid, stop, samples, t_start, every):
    while not stop.is_set():
        rss, fds, threads = proc_sample(pid)
        samples.append({"t": round(time.monotonic() - t_start, 1), "rss_kib": rss, "fds": fds,
                        "threads": threads})
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


async def probe(port, user, seconds, rcpt):
    """One SMTP client measured alone: the latency others see."""
    stats = Stats()
    stop = asyncio.Event()
    task = asyncio.create_task(smtp_client(-1, port, user, stop, stats, 0.2, rcpt))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait([task], timeout=130)
    return stats


async def run(opts, ports, pid, peers):
    smtp_port, imap_port = ports
    user, rcpt = peers["PEERS_USER"], peers["PEERS_SINK_USER"]
    t_start = time.monotonic()
    stop, stop_sampler = asyncio.Event(), asyncio.Event()
    samples = []
    smtp_stats, imap_stats, direct_stats = Stats(), Stats(), Stats()
    sampler_task = asyncio.create_task(sampler(pid, stop_sampler, samples, t_start, opts.sample_every))
    # Mail goes to another user than the one IMAP reads: the INBOX under test stays the same
    # size, so IMAP latency is not dovecot indexing thousands of new deliveries.
    tasks = [asyncio.create_task(smtp_client(i, smtp_port, user, stop, smtp_stats, opts.think, rcpt))
             for i in range(opts.smtp)]
    tasks += [asyncio.create_task(imap_client(i, imap_port, stop, imap_stats, opts.think))
              for i in range(opts.imap)]
    tls = ssl.create_default_context(cafile=peers["PEERS_CA_PEM"])
    direct = (tls, user, peers["PEERS_PASSWORD"])
    tasks += [asyncio.create_task(imap_client(i, int(peers["PEERS_IMAP_TLS_PORT"]), stop, direct_stats,
                                              opts.think, direct))
              for i in range(opts.imap_direct)]
    # Slowloris phase in the last part of the run: measure a probe before and during.
    main_phase = max(opts.duration - 2 * opts.probe_seconds, opts.duration / 2)
    await asyncio.sleep(max(0, main_phase))
    before = await probe(smtp_port, user, opts.probe_seconds, rcpt)
    loris_stop = asyncio.Event()
    counter = [0, 0]
    lorises = [asyncio.create_task(slowloris(p, True, loris_stop, counter))
               for p in [smtp_port] * (opts.slowloris // 2) + [imap_port] * (opts.slowloris - opts.slowloris // 2)]
    await asyncio.sleep(2)
    during = await probe(smtp_port, user, opts.probe_seconds, rcpt)
    imap_ok_before_stop = imap_stats.ok
    stop.set()
    loris_stop.set()
    await asyncio.wait(tasks + lorises, timeout=150)
    stop_sampler.set()
    await sampler_task
    elapsed = time.monotonic() - t_start
    return {
        "elapsed_s": round(elapsed, 1),
        "smtp": summarize(smtp_stats, elapsed),
        "imap": summarize(imap_stats, elapsed),
        "imap_direct_baseline": summarize(direct_stats, elapsed),
        "slowloris": {
            "connections": opts.slowloris, "held_open": counter[0], "dropped": counter[1],
            "probe_before": summarize(before, opts.probe_seconds),
            "probe_during": summarize(during, opts.probe_seconds),
        },
        "samples": samples,
        "imap_ok_total": imap_ok_before_stop,
    }


def summarize(stats, seconds):
    return {
        "ok": stats.ok, "errors": stats.errors, "error_kinds": stats.error_kinds,
        "per_s": round(stats.ok / seconds, 1) if seconds else 0,
        "p50_ms": round(pct(stats.lat, 50) * 1000, 1), "p99_ms": round(pct(stats.lat, 99) * 1000, 1),
    }


def seal(opts, peers, workdir):
    key = workdir / "local.key"
    subprocess.run([opts.plugin, "keygen", "-o", str(key)], check=True, capture_output=True)
    cred = workdir / "cred.yaml"
    subprocess.run(
        [opts.plugin, "seal", "--name", "mail", "--namespace", "load",
         "--username", peers["PEERS_USER"],
         "--smtp", f"localhost:{peers['PEERS_SMTP_STARTTLS_PORT']}",
         "--imap", f"localhost:{peers['PEERS_IMAP_TLS_PORT']}", "--imap-tls", "implicit",
         "--ca-file", peers["PEERS_CA_PEM"], "--service-account", "app",
         "--allowed-sender", peers["PEERS_USER"], "--allowed-recipient", "*@example.test",
         "--allowed-mailbox", "INBOX", "--kms", f"local:{key}", "--password-stdin", "-w", str(cred)],
        input=peers["PEERS_PASSWORD"] + "\n", check=True, capture_output=True, text=True)
    return key, cred


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sidecar", default=str(REPO / "target/debug/mailcred-sidecar"))
    ap.add_argument("--plugin", default=str(REPO / "target/debug/kubectl-mailcred"))
    ap.add_argument("--duration", type=float, default=300)
    ap.add_argument("--smtp", type=int, default=200)
    ap.add_argument("--imap", type=int, default=200)
    ap.add_argument("--imap-direct", type=int, default=20,
                    help="IMAP clients straight to dovecot in the same run (latency baseline)")
    ap.add_argument("--think", type=float, default=1.0, help="pause per client between operations (s)")
    ap.add_argument("--slowloris", type=int, default=50)
    ap.add_argument("--probe-seconds", type=float, default=20)
    ap.add_argument("--sample-every", type=float, default=5)
    ap.add_argument("--pool-size", type=int, default=8)
    ap.add_argument("--json", help="write the full result here")
    opts = ap.parse_args()
    env_file = os.environ.get("MAILCRED_PEERS_ENV")
    if not env_file:
        raise SystemExit("MAILCRED_PEERS_ENV is not set (e2e/peers/start.sh DIR; DIR/env)")
    peers = read_env(env_file)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    with tempfile.TemporaryDirectory(prefix="mailcred-load-") as d:
        workdir = Path(d)
        os.chmod(workdir, 0o755)
        key, cred = seal(opts, peers, workdir)
        log = workdir / "sidecar.log"
        conns = opts.smtp + opts.imap + opts.slowloris + 16
        proc = subprocess.Popen(
            [opts.sidecar, "--credential-file", str(cred), "--local-key-file", str(key), "--no-aws",
             "--smtp-listen", "127.0.0.1:0", "--imap-listen", "127.0.0.1:0",
             "--admin-listen", "127.0.0.1:0", "--max-connections", str(conns),
             "--upstream-pool-size", str(opts.pool_size), "--pod", "load"],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "info"})
        try:
            ports = None
            for _ in range(300):
                for line in log.read_text().splitlines():
                    if "mailcred sidecar serving" in line:
                        v = json.loads(line)
                        f = v.get("fields", v)
                        ports = (int(f["smtp"].rsplit(":", 1)[1]), int(f["imap"].rsplit(":", 1)[1]))
                if ports or proc.poll() is not None:
                    break
                time.sleep(0.1)
            if not ports:
                raise SystemExit(f"sidecar did not start: {log.read_text()[-2000:]}")
            result = asyncio.run(run(opts, ports, proc.pid, peers))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    s = result["samples"]
    warm = [x for x in s if x["t"] >= 60] or s
    result["rss_kib"] = {"first": s[0]["rss_kib"], "after_warmup_min": min(x["rss_kib"] for x in warm),
                         "after_warmup_max": max(x["rss_kib"] for x in warm), "last": s[-1]["rss_kib"]}
    # Growth after warm-up, while the client count is constant (before the slowloris phase).
    steady = [x for x in warm if x["t"] <= max(opts.duration - 2 * opts.probe_seconds, opts.duration / 2)]
    if len(steady) >= 2:
        slope = statistics.linear_regression([x["t"] for x in steady], [x["rss_kib"] for x in steady]).slope
        result["rss_kib"]["steady_slope_kib_per_min"] = round(slope * 60, 1)
    result["fds"] = {"max": max(x["fds"] for x in s), "last": s[-1]["fds"]}
    result["sidecar"] = opts.sidecar
    result["config"] = {k: getattr(opts, k) for k in ("duration", "smtp", "imap", "imap_direct", "think", "slowloris", "pool_size")}
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=1))
    short = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(short, indent=1))
    print("rss/fds over time (t s: RSS MiB, fds):")
    print("  " + "  ".join(f"{x['t']:.0f}:{x['rss_kib'] / 1024:.1f}/{x['fds']}" for x in s))


if __name__ == "__main__":
    sys.exit(main())
