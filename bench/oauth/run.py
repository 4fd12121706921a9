#!/usr/bin/env python3
"""OAuth upstream cost, as ratios in one run (issue 12 "Performance"):

  (1) SMTP through the sidecar with XOAUTH2 upstream vs with a password upstream: two sidecars
      (same build) against the same postfix, credentials sealed with kubectl-mailcred (local
      key); R interleaved rounds of C clients x M messages (~1 KiB), each client on one
      connection to its sidecar (the relay pools its upstream connections, which hold their
      AUTH); msgs/s per round, ratio of the medians. Goal >= 0.97.
  (2) Token requests under load: 200 concurrent app connections to the OAuth sidecar, each
      sending messages, counted in oidc-provider's own token-request log
      (PEERS_OAUTH_TOKEN_LOG); goal <= 1 per token lifetime (PEERS_OAUTH_ACCESS_TOKEN_TTL).

    MAILCRED_PEERS_ENV=/tmp/peers/env bench/oauth/run.py --json bench/oauth/run-DATE.json
"""
import argparse
import json
import smtplib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "lib"))
from mailcred_e2e import PLUGIN, SIDECAR  # noqa: E402
from mailcred_e2e import oauth  # noqa: E402
from mailcred_e2e import peers as peerlib  # noqa: E402
from mailcred_e2e.sealing import (keygen, seal, seal_oauth_client_credentials,  # noqa: E402
                                  imap_endpoint, smtp_endpoint)
from mailcred_e2e.sidecar import Sidecar, file_source  # noqa: E402

BODY = "x" * 1000


def client(port, sender, rcpt, count, errors):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            for i in range(count):
                msg = f"From: {sender}\r\nTo: {rcpt}\r\nSubject: bench {i}\r\n\r\n{BODY}\r\n"
                s.sendmail(sender, [rcpt], msg)
    except Exception as e:  # counted, not fatal: the run reports errors
        errors.append(type(e).__name__ + ": " + str(e)[:200])


def burst(port, sender, rcpt, clients, per_client):
    errors = []
    threads = [threading.Thread(target=client, args=(port, sender, rcpt, per_client, errors))
               for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return clients * per_client / elapsed, errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--messages", type=int, default=50, help="per client per round")
    ap.add_argument("--concurrent", type=int, default=200)
    ap.add_argument("--sidecar", default=str(SIDECAR))
    ap.add_argument("--json")
    opts = ap.parse_args()
    import os
    peers = peerlib.read_env(opts.env or os.environ["MAILCRED_PEERS_ENV"])
    user = peers["PEERS_USER"]
    rcpt = peers.get("PEERS_SINK_USER", user)
    work = Path(tempfile.mkdtemp(prefix="mcoauth."))
    key = work / "local.key"
    keygen(key)
    pw = work / "password.yaml"
    seal(pw, user=user, password=peers["PEERS_PASSWORD"], kms=f"local:{key}", ca_file=peers["PEERS_CA_PEM"],
         smtp=smtp_endpoint(peers), imap=imap_endpoint(peers), namespace="bench", name="pw")
    oa = work / "oauth.yaml"
    seal_oauth_client_credentials(oa, peers, kms=f"local:{key}", namespace="bench")
    cars = {
        "password": Sidecar(work / "pw.log", file_source(pw, key), pod="bench-pw", binary=opts.sidecar),
        "xoauth2": Sidecar(work / "oa.log", file_source(oa, key), pod="bench-oa", binary=opts.sidecar),
    }
    client_id = peers["PEERS_OAUTH_CLIENT_ID"]
    count = lambda: len(oauth.token_requests(peers, client_id=client_id))  # noqa: E731
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sidecar": opts.sidecar,
              "clients": opts.clients, "messages_per_client": opts.messages, "rounds": opts.rounds}
    try:
        for name, car in cars.items():
            if not car.ready():
                raise SystemExit(f"{name} sidecar not ready: {car.text()[-1000:]}")
        tokens_at_start = count()
        # Warm-up: the pools fill, the OAuth sidecar gets its token.
        for car in cars.values():
            burst(car.smtp, user, rcpt, opts.clients, 5)
        rates = {name: [] for name in cars}
        errors = {name: [] for name in cars}
        for r in range(opts.rounds):
            order = list(cars) if r % 2 == 0 else list(reversed(cars))
            for name in order:
                rate, errs = burst(cars[name].smtp, user, rcpt, opts.clients, opts.messages)
                rates[name].append(round(rate, 1))
                errors[name] += errs
        med = {name: statistics.median(v) for name, v in rates.items()}
        result["msgs_per_s"] = rates
        result["median_msgs_per_s"] = med
        result["ratio_xoauth2_vs_password"] = round(med["xoauth2"] / med["password"], 3)
        result["errors"] = {k: len(v) for k, v in errors.items()}
        result["error_samples"] = {k: v[:3] for k, v in errors.items()}
        # (2) 200 concurrent connections, 2 messages each, all open at once.
        before = count()
        started = time.monotonic()
        rate, errs = burst(cars["xoauth2"].smtp, user, rcpt, opts.concurrent, 2)
        result["concurrent"] = {
            "connections": opts.concurrent, "messages": opts.concurrent * 2,
            "seconds": round(time.monotonic() - started, 2), "msgs_per_s": round(rate, 1),
            "errors": len(errs), "error_samples": errs[:3],
            "token_requests_during": count() - before,
        }
        result["token_requests_whole_run"] = count() - tokens_at_start
        result["access_token_ttl_s"] = int(peers["PEERS_OAUTH_ACCESS_TOKEN_TTL"])
    finally:
        for car in cars.values():
            car.stop(timeout=30)
    print(json.dumps(result, indent=2))
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
