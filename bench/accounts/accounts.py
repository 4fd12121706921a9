#!/usr/bin/env python3
"""Account-set benchmark (issue 13), one run against the real peers (1,000 bulk users), the
fake API server's store mode and moto behind a counting KMS proxy:

1. RSS with 10,000 account outlines: the sidecar's VmRSS (and RssAnon) ready with an empty
   set, then after 10,000 MailCredentials arrive through its watch (goal <= 64 MiB).
2. Per cached plaintext: IMAP LOGIN once to each of 1,000 real accounts (bulk users), RSS
   after minus before, divided by 1,000 (goal <= 4 KiB).
3. KMS Decrypt calls (counted by the proxy, and the sidecar's mailcred_kms_decrypts_total)
   on a cold cache under 200 concurrent IMAP sessions spread over the 1,000 accounts
   (goal <= 1 per account per TTL).
4. Registration -> first accepted send: POST /v1/accounts, then AUTH + send until 250
   (watch latency included; goal <= 1 s).
5. Per-message throughput, account selection vs single-credential mode, interleaved reps in
   the same run (goal ratio >= 0.95).

Prints one JSON object (and writes it with --json). Usage:
  bench/accounts/accounts.py WORKDIR [--json FILE] [--outlines 10000] [--accounts 1000]
"""
import argparse
import concurrent.futures as cf
import copy
import json
import random
import re
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parents[1] / "e2e" / "lib"))
sys.path.insert(0, str(here.parents[1] / "e2e" / "faults"))
from chaos import KmsChaos  # noqa: E402
from mailcred_e2e import SIDECAR  # noqa: E402
from mailcred_e2e import peers as peerlib  # noqa: E402
from mailcred_e2e.accountset import (Registration, account_body, account_sidecar, bulk_users, imap_as,  # noqa: E402
                                     sealed_outline, smtp_as)
from mailcred_e2e.apistore import StoreApiServer  # noqa: E402
from mailcred_e2e.sealing import imap_endpoint, seal, smtp_endpoint  # noqa: E402
from mailcred_e2e.sidecar import Sidecar, file_source  # noqa: E402
from mailcred_e2e.wait import wait_until  # noqa: E402

NS, SET, SA = "e2e", "crm", "app"


def status_kib(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def settled_rss(pid, wait=2.0):
    time.sleep(wait)
    return {"vmrss_kib": status_kib(pid, "VmRSS"), "rssanon_kib": status_kib(pid, "RssAnon")}


def metric(sc, name):
    m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", sc.metrics(), re.M)
    return float(m.group(1)) if m else None


def decrypts_metric(sc):
    return sum(float(v) for v in re.findall(r'^mailcred_kms_decrypts_total\{[^}]*result="ok"[^}]*\} ([0-9.e+]+)$',
                                            sc.metrics(), re.M))


class Bench:
    def __init__(self, work, opts):
        self.work, self.opts = work, opts
        self.peers = peerlib.start(work / "peers")
        self.env = peerlib.aws_env(self.peers)
        self.kms = KmsChaos(self.peers["PEERS_KMS_ENDPOINT"])
        self.sidecar_env = dict(self.env, AWS_ENDPOINT_URL=self.kms.endpoint)
        self.arn = peerlib.create_kms_key(self.peers, "mailcred accounts bench")
        self.token = secrets.token_hex(24)
        self.bulk = bulk_users(self.peers)[: opts.accounts]
        tls = Path(self.peers["PEERS_DIR"]) / "tls"
        self.tls = tls
        self.api = StoreApiServer(NS, secrets.token_hex(24), tls / "server.pem", tls / "server.key",
                                  watch_seconds=300, bookmark_seconds=30)
        self.api.__enter__()
        self.result = {"outlines": opts.outlines, "accounts": len(self.bulk)}

    def outlines(self):
        """Real sealed outlines for the bulk accounts (b0001..), clones of one for the rest
        (names differ, so they never decrypt: outlines only, never used)."""
        t = time.monotonic()

        def one(i):
            user, password = self.bulk[i]
            return sealed_outline(self.work, self.peers, name=f"b{i + 1:04d}", user=user, password=password,
                                  kms=f"aws:{self.arn}", set_name=SET, service_account=SA, env=self.env)
        with cf.ThreadPoolExecutor(4) as pool:
            real = list(pool.map(one, range(len(self.bulk))))
        for f in self.work.glob("outline-*.yaml"):
            f.unlink()
        clones = []
        for i in range(self.opts.outlines - len(real)):
            o = copy.deepcopy(real[i % len(real)])
            o["metadata"]["name"] = f"o{i + 1:05d}"
            clones.append(o)
        self.result["seal_seconds_per_account"] = round((time.monotonic() - t) / max(1, len(real)), 3)
        return real, clones

    def sidecar(self, name, **kw):
        sc = account_sidecar(self.work, self.api, self.peers["PEERS_CA_PEM"], set_name=SET, service_account=SA,
                             token=self.token, seal_kms_key=self.arn, env=self.sidecar_env, log_name=name,
                             cache_ttl=600, cache_size=max(1000, len(self.bulk)), binary=self.opts.sidecar,
                             registration=not self.opts.store_direct, **kw)
        if not sc.ready(60):
            raise SystemExit(f"{name} not ready: {sc.tail()}")
        return sc

    def wait_loaded(self, sc, n, timeout=120):
        """Until the sidecar's gauge says n accounts (or, without the gauge, 5 s)."""
        if metric(sc, "mailcred_account_set_accounts") is None:
            time.sleep(5)
            return False
        return wait_until(lambda: metric(sc, "mailcred_account_set_accounts") >= n, timeout, step=0.2)

    def logins(self, sc, names, workers):
        """IMAP LOGIN + LOGOUT as each name, `workers` at a time: (ok count, failures)."""
        fails = []

        def one(name):
            ok, detail, m = imap_as(sc.imap, name, self.token, timeout=60)
            if m:
                m.logout()
            elif len(fails) < 5:
                fails.append(f"{name}: {detail}")
            return ok
        with cf.ThreadPoolExecutor(workers) as pool:
            oks = sum(pool.map(one, names))
        return oks, fails

    def step_memory(self, real, clones):
        sc = self.sidecar("sidecar-a.log")
        empty = settled_rss(sc.pid)
        t = time.monotonic()
        self.api.store.load(real + clones)
        gauge = self.wait_loaded(sc, len(real) + len(clones))
        loaded_s = time.monotonic() - t
        loaded = settled_rss(sc.pid)
        names = [o["metadata"]["name"] for o in real]
        d0 = self.kms.decrypts()
        oks, fails = self.logins(sc, names, 8)
        cached = settled_rss(sc.pid)
        self.result["memory"] = {
            "empty": empty, "loaded": loaded, "loaded_via_watch_seconds": round(loaded_s, 2),
            "gauge_seen": gauge, "after_1000_cached": cached, "logins_ok": oks, "login_failures": fails,
            "vmrss_loaded_mib": round(loaded["vmrss_kib"] / 1024, 1),
            "per_outline_bytes": round((loaded["vmrss_kib"] - empty["vmrss_kib"]) * 1024 / max(1, len(real) + len(clones))),
            "per_cached_plaintext_kib": round((cached["vmrss_kib"] - loaded["vmrss_kib"]) / max(1, oks), 2),
            "per_cached_plaintext_anon_kib": round((cached["rssanon_kib"] - loaded["rssanon_kib"]) / max(1, oks), 2),
            "cached_plaintexts_gauge": metric(sc, "mailcred_account_set_cached_plaintexts"),
            "kms_decrypts_for_1000_logins": self.kms.decrypts() - d0,
        }
        sc.stop()

    def step_kms_concurrency(self, real):
        """A fresh sidecar (cold cache), 200 threads x 10 sessions over the accounts."""
        sc = self.sidecar("sidecar-b.log")
        self.wait_loaded(sc, self.opts.outlines)
        names = [o["metadata"]["name"] for o in real]
        rnd = random.Random(13)
        sessions = [rnd.choice(names) for _ in range(2000)]
        d0, m0 = self.kms.decrypts(), decrypts_metric(sc)
        t = time.monotonic()
        oks, fails = self.logins(sc, sessions, 200)
        took = time.monotonic() - t
        distinct = len(set(sessions))
        proxy = self.kms.decrypts() - d0
        self.result["kms"] = {
            "sessions": len(sessions), "concurrency": 200, "distinct_accounts": distinct, "ok": oks,
            "failures": fails, "seconds": round(took, 2), "decrypts_counted_by_proxy": proxy,
            "decrypts_sidecar_metric": decrypts_metric(sc) - m0,
            "decrypts_per_account": round(proxy / max(1, distinct), 3),
        }
        return sc

    def step_registration_latency(self, sc, n=5):
        """POST /v1/accounts (or, with --store-direct, a create in the API store of an outline
        sealed beforehand: the watch part only) until the first accepted send."""
        reg = Registration(sc.registration, self.token, self.work)
        lat, errors = [], []
        direct = {}
        if self.opts.store_direct:
            for i in range(n):
                user, password = self.bulk[i]
                direct[i] = sealed_outline(self.work, self.peers, name=f"reg-{i}", user=user, password=password,
                                           kms=f"aws:{self.arn}", set_name=SET, service_account=SA, env=self.env)
        for i in range(n):
            user, password = self.bulk[i]
            t = time.monotonic()
            if self.opts.store_direct:
                code, body = (201, None) if self.api.store.create(direct[i])[0] else (409, None)
            else:
                code, body = reg("POST", "/v1/accounts", account_body(self.peers, user, password, name=f"reg-{i}"))
            posted = time.monotonic() - t
            if code != 201:
                errors.append(f"{code} {json.dumps(body)[:200]}")
                continue
            ok = wait_until(lambda: smtp_as(sc.smtp, f"reg-{i}", self.token, user, [user], f"reg-{i}")[0] == 250,
                            10, step=0.02)
            lat.append((time.monotonic() - t, posted) if ok else (None, posted))
        got = [x[0] for x in lat if x[0] is not None]
        self.result["registration_to_first_send"] = {
            "n": n, "seconds": [round(x, 3) for x in got], "median": round(statistics.median(got), 3) if got else None,
            "max": round(max(got), 3) if got else None, "via": "store create" if self.opts.store_direct else "POST /v1/accounts",
            "post_seconds": [round(x[1], 3) for x in lat], "errors": errors}

    def throughput(self, port, auth, clients=8, per_client=25):
        """msgs/s with `clients` persistent connections; auth: None or [(account, user)]."""
        import smtplib
        from mailcred_e2e.mail import message
        errors = []

        def one(i):
            account, user = auth[i] if auth else (None, self.peers["PEERS_USER"])
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=60, local_hostname="bench.e2e.test") as s:
                    s.ehlo()
                    if account:
                        s.user, s.password = account, self.token
                        s.auth("PLAIN", s.auth_plain)
                    for k in range(per_client):
                        s.send_message(message(user, [user], f"tp-{i}-{k}", body="x" * 10240),
                                       from_addr=user, to_addrs=[user])
            except Exception as e:  # counted, not raised: a run reports its errors
                errors.append(f"{type(e).__name__}: {e}")
        t = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return clients * per_client / (time.monotonic() - t), errors

    def step_throughput(self, sc_accounts, reps=3):
        user, password = self.peers["PEERS_USER"], self.peers["PEERS_PASSWORD"]
        cred = self.work / "single.yaml"
        seal(cred, user=user, password=password, kms=f"aws:{self.arn}", ca_file=self.peers["PEERS_CA_PEM"],
             smtp=smtp_endpoint(self.peers), imap=imap_endpoint(self.peers), namespace=NS, env=self.env)
        log = self.work / "sidecar-single.log"
        log.unlink(missing_ok=True)
        single = Sidecar(log, file_source(cred), pod="bench-single", env=self.sidecar_env, cache_ttl=600,
                         binary=self.opts.sidecar)
        if not single.ready(60):
            raise SystemExit(f"single-credential sidecar not ready: {single.tail()}")
        auth = [(f"b{i + 1:04d}", self.bulk[i][0]) for i in range(8)]
        runs = {"single": [], "accounts": []}
        errors = []
        self.throughput(single.smtp, None, 2, 5)  # warm both: pools, cached plaintexts
        self.throughput(sc_accounts.smtp, auth, 8, 2)
        for _ in range(reps):
            for mode, port, a in (("single", single.smtp, None), ("accounts", sc_accounts.smtp, auth)):
                rate, errs = self.throughput(port, a)
                runs[mode].append(round(rate, 1))
                errors += errs
        single.stop()
        med = {k: statistics.median(v) for k, v in runs.items()}
        self.result["throughput"] = {"msgs_per_s": runs, "median": med, "ratio": round(med["accounts"] / med["single"], 3),
                                     "clients": 8, "messages_per_client": 25, "message_bytes": 10240,
                                     "errors": errors[:5]}

    def close(self):
        self.api.__exit__(None, None, None)
        self.kms.close()
        peerlib.stop(self.work / "peers")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--json")
    ap.add_argument("--outlines", type=int, default=10000)
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--sidecar", default=str(SIDECAR), help="the sidecar binary (default: the debug build)")
    ap.add_argument("--store-direct", action="store_true",
                    help="no registration API in this build: time a create in the API store instead of a POST")
    opts = ap.parse_args()
    work = Path(opts.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    b = Bench(work, opts)
    try:
        real, clones = b.outlines()
        b.step_memory(real, clones)
        sc = b.step_kms_concurrency(real)
        b.step_registration_latency(sc)
        b.step_throughput(sc)
        sc.stop()
    finally:
        b.close()
    r = b.result
    r["goals"] = {
        "rss_10000_outlines_le_64_mib": r["memory"]["vmrss_loaded_mib"] <= 64,
        "per_cached_plaintext_le_4_kib": r["memory"]["per_cached_plaintext_kib"] <= 4,
        "kms_decrypts_le_1_per_account": r["kms"]["decrypts_per_account"] <= 1,
        "registration_to_send_le_1_s": (r["registration_to_first_send"]["max"] or 99) <= 1,
        "throughput_ratio_ge_0_95": r["throughput"]["ratio"] >= 0.95,
    }
    text = json.dumps(r, indent=1)
    print(text)
    if opts.json:
        Path(opts.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
