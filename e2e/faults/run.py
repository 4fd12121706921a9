#!/usr/bin/env python3
"""Fault-injection end-to-end suite.

The real sidecar binary against the real peers (postfix, dovecot, moto from e2e/peers), with
small chaos proxies (chaos.py) placed between the sidecar and a peer: KMS slow, slower than
the sidecar's bound, or erroring; the upstream SMTP connection reset in the middle of DATA;
the upstream IMAP connection reset in the middle of a FETCH literal; an upstream certificate
that has expired; the credential re-sealed while an application connection stays open; the
MailCredential deleted (Kubernetes API source, against a fake API server) while an
application connection stays open. Real clients (python smtplib/imaplib) play the
application. Every scenario also proves that its fault was hit (the proxies count), and at
the end no log or client output may hold a plaintext password.

Usage: run.py WORKDIR [--only s1,s4] [--strict]. Known sidecar bugs are listed in
KNOWN_FAILURES: their checks still run and print XFAIL (or XPASS once fixed); --strict
counts them as failures.

The scenarios live in scenarios_kms.py (s1-s3), scenarios_connection.py (s4-s5),
scenarios_tls.py (s6) and scenarios_lifecycle.py (s7-s8); the fault injectors in chaos.py.
"""
import argparse
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "e2e" / "lib"))
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ next to the suite's modules

from context import Context  # noqa: E402
from mailcred_e2e import peers as peerlib  # noqa: E402
from mailcred_e2e.checks import Checks  # noqa: E402
from mailcred_e2e.leaks import find_leaks  # noqa: E402
from scenarios_connection import s4_smtp_reset, s5_imap_reset  # noqa: E402
from scenarios_kms import s1_kms_slow, s2_kms_timeout, s3_kms_error  # noqa: E402
from scenarios_lifecycle import s7_resealed, s8_deleted  # noqa: E402
from scenarios_tls import s6_expired_cert  # noqa: E402

# Checks that fail because of a sidecar bug reported to the lead; the check stays in place.
KNOWN_FAILURES = {
    # Empty: the four sidecar bugs this suite found (EHLO waiting for KMS, audit reason
    # "credential" instead of the KMS label, deletion reported as invalid_spec, plaintext kept
    # after deletion) are fixed; a new one goes here with its cause while it is being fixed.
}

SCENARIOS = [
    ("s1", "KMS slow (5 s), single decrypt for concurrent sessions", s1_kms_slow),
    ("s2", "KMS slower than the bound (15 s)", s2_kms_timeout),
    ("s3", "KMS HTTP 500, then recovery", s3_kms_error),
    ("s4", "upstream SMTP reset mid-DATA", s4_smtp_reset),
    ("s5", "upstream IMAP reset mid-literal", s5_imap_reset),
    ("s6", "expired upstream certificate", s6_expired_cert),
    ("s7", "re-sealed mid-session", s7_resealed),
    ("s8", "MailCredential deleted mid-session (API source)", s8_deleted),
]


class Suite(Checks):
    """The check recorder, plus known failures (XFAIL/XPASS) and per-scenario timing."""

    def __init__(self, strict):
        super().__init__()
        self.strict = strict
        self.xfailed = []
        self.xpassed = []
        self.timings = []

    def check(self, name, ok, detail=""):
        reason = KNOWN_FAILURES.get(name)
        if reason is None or self.strict:
            return super().check(name, ok, detail)
        if ok:
            self.passed += 1
            self.xpassed.append(name)
            print(f"XPASS {name} (listed in KNOWN_FAILURES: remove it)")
        else:
            self.xfailed.append(name)
            print(f"XFAIL {name} {detail} [known: {reason}]".replace("  ", " "))
        return ok

    def summary(self):
        return (f"{super().summary()}, {len(self.xfailed)} known failures (xfail)"
                + (f", {len(self.xpassed)} xpass" if self.xpassed else ""))


def run_scenario(ctx, sid, title, fn):
    print(f"\n== {sid}: {title}", flush=True)
    t0 = time.monotonic()
    try:
        fn(ctx)
    except Exception as e:
        ctx.suite.check(f"{sid}: scenario ran to the end", False,
                        f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
    finally:
        ctx.run_cleanups()
    took = time.monotonic() - t0
    ctx.suite.timings.append((sid, took))
    print(f"-- {sid} took {took:.1f} s", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--only", default="", help="comma-separated scenario ids (s1..s8)")
    ap.add_argument("--strict", action="store_true", help="known failures count as failures")
    opts = ap.parse_args()
    only = {s.strip() for s in opts.only.split(",") if s.strip()}
    suite = Suite(strict=opts.strict)
    workdir = Path(opts.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    peers_dir = workdir / "peers"
    started = time.monotonic()
    peers = peerlib.start(peers_dir)
    ctx = None
    try:
        ctx = Context(suite, workdir, peers, "aws:" + peerlib.create_kms_key(peers, "mailcred fault suite"))
        for sid, title, fn in SCENARIOS:
            if not only or sid in only:
                run_scenario(ctx, sid, title, fn)
    finally:
        peerlib.stop(peers_dir)
        if ctx is not None:
            leaks = find_leaks(workdir, ctx.secrets, suite.outputs)
            suite.check("no plaintext password in any sidecar log, audit line or client output", not leaks,
                        repr(leaks))
    total = time.monotonic() - started
    print("\ntimings: " + ", ".join(f"{sid} {t:.1f} s" for sid, t in suite.timings) + f"; total {total:.1f} s")
    if suite.xfailed:
        print(f"known failures (XFAIL, see KNOWN_FAILURES in {Path(__file__).name}):")
        for name in suite.xfailed:
            print(f"  - {name}: {KNOWN_FAILURES[name]}")
    return suite


if __name__ == "__main__":
    s = main()
    print(f"\n{s.summary()}")
    sys.exit(s.exit_status())
