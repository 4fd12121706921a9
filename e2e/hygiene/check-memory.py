#!/usr/bin/env python3
"""Secret hygiene of a running sidecar: is the plaintext password in its memory only while
cached?

Runs the real `mailcred-sidecar` with a credential sealed by `kubectl-mailcred seal` (local
provider) against the real peers (e2e/peers/start.sh), once per protocol:

  1. before any use: the password must be absent from the sidecar's memory (nothing decrypted);
  2. right after a real use (an SMTP message sent through postfix, or an IMAP LOGIN + SELECT +
     LOGOUT through dovecot): the password must be PRESENT (it is cached) -- otherwise the
     scan could never fail and proves nothing;
  3. after the cache TTL (--cache-ttl-seconds 2) plus the relay's pool sweep: it must be
     ABSENT from every readable private mapping (/proc/PID/maps + /proc/PID/mem);
  4. always: absent from /proc/PID/environ, /proc/PID/cmdline and the sidecar's log;
  5. the cached password's pages are mlocked while cached (VmLck > 0) and unlocked after.

With the OAuth peers (PEERS_OAUTH_*), the same for a sealed client-credentials grant (XOAUTH2
upstream, scenario "oauth-smtp"): the client secret absent before use, present while cached,
absent after TTL + sweep (steps 1-4; not mlocked). The access token is not scanned for: its
value never leaves the sidecar, so this script cannot know what to look for.

Needs root (or CAP_SYS_PTRACE): the sidecar makes itself non-dumpable, so /proc/PID/mem is
closed to other users. Prints PASS/FAIL per check and a last line "N passed, M failed"; exit
status 1 on any failure.

    MAILCRED_PEERS_ENV=/tmp/peers/env e2e/hygiene/check-memory.py \
        --sidecar target/debug/mailcred-sidecar --plugin target/debug/kubectl-mailcred
"""

import argparse
import imaplib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "lib"))
from mailcred_e2e import PLUGIN, SIDECAR  # noqa: E402
from mailcred_e2e import peers as peerlib  # noqa: E402
from mailcred_e2e.checks import Checks  # noqa: E402
from mailcred_e2e.mail import smtp_send  # noqa: E402
from mailcred_e2e.memory import locked_kib, needles, scan_memory  # noqa: E402
from mailcred_e2e.sealing import seal_for_peers_user, seal_oauth_client_credentials  # noqa: E402
from mailcred_e2e.sidecar import Sidecar, file_source  # noqa: E402

# The relay sweeps upstream pools whose credential is gone every 15 s (smtp-relay/src/server.rs).
POOL_SWEEP_SECONDS = 15
TTL_SECONDS = 2


def start_sidecar(args, workdir, cred, key, tag):
    sc = Sidecar(workdir / f"sidecar-{tag}.log", file_source(cred, key), pod="hygiene",
                 env={**os.environ, "RUST_LOG": "debug"}, cache_ttl=TTL_SECONDS, binary=args.sidecar)
    if not sc.wait_serving(30):
        sc.stop()
        raise SystemExit(f"sidecar did not start:\n{sc.text()[-2000:]}")
    return sc


def use_smtp(sc, user):
    code, text, _ = smtp_send(sc.smtp, user, [user], f"hygiene-{uuid.uuid4().hex[:8]}",
                              body="secret hygiene check")
    if code != 250:
        raise RuntimeError(f"SMTP through the sidecar: {code} {text}")


def use_imap(sc, user):
    m = imaplib.IMAP4("127.0.0.1", sc.imap, timeout=60)
    m.login("app", "anything")
    typ, _ = m.select("INBOX", readonly=True)
    if typ != "OK":
        raise RuntimeError("SELECT INBOX failed")
    m.logout()


def scenario(args, checks, peers, workdir, cred, key, tag, use, secret=None, mlocked=True):
    """`secret`: what must be gone after the TTL (default the password; the OAuth scenario
    passes the client secret). `mlocked`: whether the cache mlocks it (the password cache does;
    the OAuth grant secret lives in the token source, zeroized on drop, not mlocked)."""
    user, password = peers["PEERS_USER"], secret or peers["PEERS_PASSWORD"]
    wanted = needles(user, password)
    sc = start_sidecar(args, workdir, cred, key, tag)
    pid = sc.pid
    try:
        hits, scanned = scan_memory(pid, wanted)
        checks.check(f"{tag}: password absent before first use ({scanned >> 20} MiB scanned)",
                     not any(hits.values()), hits)
        t0 = time.monotonic()
        use(sc, user)
        hits, scanned = scan_memory(pid, wanted)
        elapsed = time.monotonic() - t0
        present = bool(hits["plaintext"])
        checks.check(f"{tag}: password PRESENT while cached (scan {elapsed:.1f}s after use, TTL {TTL_SECONDS}s)",
                     present or elapsed >= TTL_SECONDS,
                     "not found although cached: the scan cannot see the cache")
        if not present and elapsed >= TTL_SECONDS:
            print(f"     (inconclusive: use+scan took {elapsed:.1f}s >= TTL)")
        print("     copies while cached: " + ", ".join(f"{k}={len(v)}" for k, v in hits.items()))
        # Root has CAP_IPC_LOCK, so the cache's mlock cannot be refused here.
        if mlocked:
            checks.check(f"{tag}: cached password pages are mlocked (VmLck {locked_kib(pid)} kB)",
                         locked_kib(pid) > 0 or elapsed >= TTL_SECONDS)
        time.sleep(TTL_SECONDS + POOL_SWEEP_SECONDS + 3)
        hits, scanned = scan_memory(pid, wanted)
        checks.check(f"{tag}: password ABSENT after TTL + pool sweep ({scanned >> 20} MiB scanned)",
                     not hits["plaintext"], f"{len(hits['plaintext'])} copies at {hits['plaintext'][:6]}")
        if mlocked:
            checks.check(f"{tag}: nothing stays mlocked after the TTL (VmLck {locked_kib(pid)} kB)",
                         locked_kib(pid) == 0)
        for enc in ("auth-plain-base64", "auth-login-base64"):
            if hits[enc]:
                print(f"     note: {enc} still in memory at {hits[enc][:4]}")
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        checks.check(f"{tag}: password absent from /proc/{pid}/environ", wanted["plaintext"] not in environ)
        checks.check(f"{tag}: password absent from /proc/{pid}/cmdline", wanted["plaintext"] not in cmdline)
    finally:
        sc.stop()
    text = sc.log_path.read_bytes()
    checks.check(f"{tag}: password absent from the sidecar log ({len(text)} bytes, RUST_LOG=debug)",
                 not any(n in text for n in wanted.values()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sidecar", default=str(SIDECAR))
    ap.add_argument("--plugin", default=str(PLUGIN))
    ap.add_argument("--only", choices=["smtp", "imap", "oauth"])
    args = ap.parse_args()
    peers = peerlib.from_environment()
    if os.geteuid() != 0:
        raise SystemExit("needs root: the sidecar is non-dumpable, /proc/PID/mem is closed to others")
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="mailcred-hygiene-") as d:
        workdir = Path(d)
        os.chmod(workdir, 0o755)
        key, cred = seal_for_peers_user(workdir, peers, "hygiene", plugin=args.plugin)
        checks.check("sealed YAML holds no plaintext", peers["PEERS_PASSWORD"] not in cred.read_text())
        if args.only in (None, "smtp"):
            scenario(args, checks, peers, workdir, cred, key, "smtp", use_smtp)
        if args.only in (None, "imap"):
            scenario(args, checks, peers, workdir, cred, key, "imap", use_imap)
        if args.only in (None, "oauth") and "PEERS_OAUTH_CLIENT_SECRET" in peers:
            # A sealed client-credentials grant (XOAUTH2 upstream): the client secret must go
            # with the cached credential. The access token's value is not known to this
            # script (it never leaves the sidecar), so it is not scanned for.
            oauth_cred = workdir / "oauth.yaml"
            seal_oauth_client_credentials(oauth_cred, peers, kms=f"local:{key}", namespace="hygiene",
                                          plugin=args.plugin)
            scenario(args, checks, peers, workdir, oauth_cred, key, "oauth-smtp", use_smtp,
                     secret=peers["PEERS_OAUTH_CLIENT_SECRET"], mlocked=False)
    print(checks.summary())
    return checks.exit_status()


if __name__ == "__main__":
    sys.exit(main())
