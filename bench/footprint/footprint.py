#!/usr/bin/env python3
"""The sidecar's footprint (issue #15), several builds or settings side by side in one run:

- start to ready: process start until /readyz answers 200 (median of --starts cold starts);
- RSS idle: VmRSS after a warm-up of 40 messages and 40 IMAP sessions, then 2 s idle, split
  into private memory (RssAnon) and mapped file pages (RssFile: binary and libraries);
- RSS with 100 open connections: 100 SMTP connections held in the middle of DATA;
- throughput under the bench load: SMTP messages/s (8 clients, a new connection per
  message, 10 KiB, timed to the sidecar's 250 = upstream's 250) and IMAP MB/s (8 sessions
  fetching the 40 warm-up messages' bodies repeatedly), with the sidecar's CPU per unit;
- threads, and the image size when run.sh passes it.

Every variant is `LABEL=BINARY[,ENV=VALUE...]` (env: MALLOC_ARENA_MAX, TOKIO_WORKER_THREADS,
...). Variants run interleaved, --reps times, and each figure is the median over the reps.
The credential is sealed with the AWS provider against moto, so the sidecar runs its AWS SDK
as in a pod (file source: the API source's own cost is the kube client's, present in both).
"""
import argparse
import http.client
import imaplib
import json
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "lib"))
from mailcred_e2e import PLUGIN  # noqa: E402
from mailcred_e2e import peers as peerlib  # noqa: E402
from mailcred_e2e.mail import big_message  # noqa: E402
from mailcred_e2e.sealing import imap_endpoint, seal, smtp_endpoint  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
GOALS = {"start_to_ready_ms": ("<= 50", 50), "rss_idle_mib": ("<= 6", 6),
         "rss_100_conns_mib": ("<= 24", 24), "image_mb": ("<= 15", 15)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sidecar:
    def __init__(self, binary, env, credential, log):
        self.smtp, self.imap, self.admin = free_port(), free_port(), free_port()
        args = [binary, "--credential-file", str(credential), "--namespace", "bench",
                "--smtp-listen", f"127.0.0.1:{self.smtp}", "--imap-listen", f"127.0.0.1:{self.imap}",
                "--admin-listen", f"127.0.0.1:{self.admin}", "--upstream-pool-size", "8",
                "--max-connections", "512"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=30):
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}")
            time.sleep(0.0005)
        raise RuntimeError("sidecar not ready in time")

    def status(self, key):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def rss_mib(self):
        return self.status("VmRSS") / 1024

    def pss_mib(self):
        """Proportional set size: shared file pages counted once per process sharing them."""
        for line in Path(f"/proc/{self.proc.pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def rss_by_mapping(self):
        """Resident KiB per kind of mapping (/proc/PID/smaps): where the RSS is, page by page
        category: the binary's text/data, each shared library, heap, anonymous (thread stacks,
        mmap'd heap), the rest."""
        kinds, kind = {}, None
        for line in Path(f"/proc/{self.proc.pid}/smaps").read_text().splitlines():
            head = line.split()
            if "-" in head[0] and ":" not in head[0]:
                path = head[5] if len(head) > 5 else ""
                name = Path(path).name
                if path == os.path.realpath(self.proc.args[0]):
                    kind = "binary"
                elif path.startswith("/") and ".so" in name:
                    kind = name.split(".so")[0]
                else:
                    kind = {"": "anon", "[heap]": "heap", "[stack]": "stack"}.get(path, "other")
            elif head[0] == "Rss:":
                kinds[kind] = kinds.get(kind, 0) + int(head[1])
        return kinds

    def cpu_s(self):
        f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def in_threads(n, fn):
    errors = []

    def run(i):
        try:
            fn(i)
        except Exception as e:  # noqa: BLE001 - counted and reported, the run goes on
            errors.append(repr(e))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def smtp_messages(port, sender, rcpt, count, clients, size):
    body = big_message("footprint", size)
    left = iter(range(count))
    lock = threading.Lock()

    def client(_):
        while True:
            with lock:
                if next(left, None) is None:
                    return
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
                s.sendmail(sender, [rcpt], body)
    return in_threads(clients, client)


def imap_sessions(port, count, clients, fetch_rounds=0, fetch_set="1"):
    left = iter(range(count))
    lock = threading.Lock()
    got = [0]

    def client(_):
        while True:
            with lock:
                if next(left, None) is None:
                    return
            m = imaplib.IMAP4("127.0.0.1", port, timeout=60)
            m.login("app", "anything")
            m.select("INBOX", readonly=True)
            m.fetch("1", "(FLAGS)")
            for _ in range(fetch_rounds):
                typ, data = m.fetch(fetch_set, "(BODY.PEEK[])")
                n = sum(len(part[1]) for part in data if isinstance(part, tuple))
                with lock:
                    got[0] += n
            m.logout()
    errors = in_threads(clients, client)
    return errors, got[0]


def hold_connections(port, count, sender, rcpt):
    """count SMTP connections each in the middle of DATA; returns the open sockets."""
    socks = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        f = s.makefile("rb")
        f.readline()
        s.sendall(f"EHLO b\r\nMAIL FROM:<{sender}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
        while not f.readline().startswith(b"354"):
            pass
        s.sendall(f"From: <{sender}>\r\nSubject: hold {i}\r\n\r\n".encode() + b"x" * 5000 + b"\r\n")
        socks.append((s, f))
    return socks


def release(socks):
    for s, _ in socks:
        s.sendall(b"y" * 5000 + b"\r\n.\r\nQUIT\r\n")
    ok = sum(1 for _, f in socks if f.readline().startswith(b"250"))
    for s, _ in socks:
        s.close()
    return ok


def measure(binary, env, args, peers, log):
    out = {}
    starts = []
    for _ in range(args.starts):
        sc = Sidecar(binary, env, args.credential, log)
        starts.append(sc.wait_ready() * 1000)
        sc.stop()
    out["start_to_ready_ms"] = statistics.median(starts)
    sc = Sidecar(binary, env, args.credential, log)
    try:
        sc.wait_ready()
        out["rss_start_mib"] = sc.rss_mib()
        user, sink = peers["PEERS_USER"], peers["PEERS_SINK_USER"]
        errors = smtp_messages(sc.smtp, user, sink, 40, 8, 10 * 1024)
        errors += imap_sessions(sc.imap, 40, 8)[0]
        time.sleep(2)
        out["rss_idle_mib"] = sc.rss_mib()
        # Private memory (heap, stacks, relocated data) vs the binary's and libraries' own
        # pages (page cache: shared by every pod of the node that runs the same image layer).
        out["rss_idle_anon_mib"] = sc.status("RssAnon") / 1024
        out["rss_idle_file_mib"] = sc.status("RssFile") / 1024
        out["threads_idle"] = sc.status("Threads")
        out["pss_idle_mib"] = sc.pss_mib()
        for kind, kib in sc.rss_by_mapping().items():
            out[f"rss_idle_{kind}_kib"] = kib

        cpu0, t0 = sc.cpu_s(), time.monotonic()
        errors += smtp_messages(sc.smtp, user, sink, args.messages, 8, 10 * 1024)
        dt, cpu = time.monotonic() - t0, sc.cpu_s() - cpu0
        out["smtp_msgs_per_s"] = args.messages / dt
        out["smtp_cpu_ms_per_msg"] = cpu * 1000 / args.messages
        cpu0, t0 = sc.cpu_s(), time.monotonic()
        e, nbytes = imap_sessions(sc.imap, 8, 8, args.fetch_rounds, f"1:{args.inbox}")
        errors += e
        dt, cpu = time.monotonic() - t0, sc.cpu_s() - cpu0
        out["imap_mb_per_s"] = nbytes / dt / 1e6
        out["imap_cpu_ms_per_mb"] = cpu * 1000 / (nbytes / 1e6) if nbytes else float("nan")

        socks = hold_connections(sc.smtp, 100, user, sink)
        out["rss_100_conns_mib"] = sc.rss_mib()
        out["held_ok"] = release(socks)
        out["rss_after_mib"] = sc.rss_mib()
        out["errors"] = len(errors)
        if errors:
            print(f"  errors: {errors[:3]}", file=sys.stderr)
    finally:
        sc.stop()
    return out


ROWS = [("start_to_ready_ms", "start to ready, ms", 1), ("rss_start_mib", "RSS at ready, MiB", 1),
        ("rss_idle_mib", "RSS idle after warm-up, MiB", 1),
        ("rss_idle_anon_mib", "  of which private (RssAnon)", 1), ("rss_idle_file_mib", "  of which file pages (RssFile)", 1),
        ("pss_idle_mib", "PSS idle (shared pages split), MiB", 1),
        ("rss_100_conns_mib", "RSS, 100 connections mid-DATA, MiB", 1),
        ("rss_after_mib", "RSS after the runs, MiB", 1), ("threads_idle", "threads (idle)", 0),
        ("image_mb", "image size, MB", 1), ("image_compressed_mb", "image, gzip, MB", 1),
        ("smtp_msgs_per_s", "SMTP msgs/s (8 clients, 10 KiB)", 0), ("smtp_cpu_ms_per_msg", "sidecar CPU ms per message", 2),
        ("imap_mb_per_s", "IMAP FETCH MB/s (8 sessions)", 0), ("imap_cpu_ms_per_mb", "sidecar CPU ms per MB fetched", 2),
        ("errors", "client errors", 0)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", action="append", required=True, help="LABEL=BINARY[,ENV=VALUE...]")
    ap.add_argument("--image", action="append", default=[], help="LABEL=BYTES,COMPRESSED_BYTES")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--fetch-rounds", type=int, default=5)
    ap.add_argument("--inbox", type=int, default=40)
    ap.add_argument("--plugin", default=str(PLUGIN))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    peers = peerlib.from_environment()
    aws = peerlib.aws_env(peers)
    arn = peerlib.create_kms_key(peers, "footprint bench")
    args.credential = args.work / "credential.yaml"
    seal(args.credential, user=peers["PEERS_USER"], password=peers["PEERS_PASSWORD"], kms=f"aws:{arn}",
         ca_file=peers["PEERS_CA_PEM"], smtp=smtp_endpoint(peers), imap=imap_endpoint(peers),
         namespace="bench", env=aws, plugin=args.plugin)
    variants = []
    for spec in args.variant:
        label, _, rest = spec.partition("=")
        binary, *envs = rest.split(",")
        env = dict(aws)
        env.update(e.split("=", 1) for e in envs)
        variants.append((label, binary, env))
    # The mailbox the IMAP load reads: --inbox messages of 10 KiB in PEERS_USER's INBOX.
    have = peerlib.direct_imap(peers, peers["PEERS_USER"], peers["PEERS_PASSWORD"])
    count = int(have.select("INBOX", readonly=True)[1][0])
    have.logout()
    if count < args.inbox:
        sc = Sidecar(variants[0][1], variants[0][2], args.credential, open(args.work / "fill.log", "ab"))
        sc.wait_ready()
        smtp_messages(sc.smtp, peers["PEERS_USER"], peers["PEERS_USER"], args.inbox - count, 4, 10 * 1024)
        sc.stop()
        time.sleep(2)
    results = {label: [] for label, _, _ in variants}
    log = open(args.work / "sidecar.log", "ab")
    for rep in range(args.reps):
        for label, binary, env in variants:
            print(f"rep {rep + 1}/{args.reps}: {label}", file=sys.stderr, flush=True)
            results[label].append(measure(binary, env, args, peers, log))
    table = {label: {k: statistics.median(r.get(k, 0) for r in runs) for k in set().union(*runs)}
             for label, runs in results.items()}
    for spec in args.image:
        label, _, sizes = spec.partition("=")
        size, compressed = (int(x) for x in sizes.split(","))
        table[label]["image_mb"], table[label]["image_compressed_mb"] = size / 1e6, compressed / 1e6
    labels = [label for label, _, _ in variants]
    print(f"\nmedians of {args.reps} interleaved reps; {args.messages} messages, "
          f"{args.fetch_rounds} x {args.inbox} bodies per IMAP session\n")
    print("| | goal | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for key, name, digits in ROWS:
        goal = GOALS.get(key, ("", None))[0]
        cells = [f"{table[label][key]:.{digits}f}" if key in table[label] else "" for label in labels]
        print(f"| {name} | {goal} | " + " | ".join(cells) + " |")
    # The idle RSS by mapping (KiB), every kind any variant has.
    kinds = sorted({k for label in labels for k in table[label] if k.endswith("_kib")})
    for key in kinds:
        cells = [f"{table[label].get(key, 0):.0f}" for label in labels]
        print(f"| idle RSS, {key[len('rss_idle_'):-len('_kib')]}, KiB | | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"variants": {lb: {"binary": b, "env": {k: v for k, v in e.items() if k not in aws}}
                                                      for lb, b, e in variants}, "medians": table, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
