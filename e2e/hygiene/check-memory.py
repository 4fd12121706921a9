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

Needs root (or CAP_SYS_PTRACE): the sidecar makes itself non-dumpable, so /proc/PID/mem is
closed to other users. Exit 0 when every check passed, 1 otherwise; every check is printed.

    MAILCRED_PEERS_ENV=/tmp/peers/env e2e/hygiene/check-memory.py \
        --sidecar target/debug/mailcred-sidecar --plugin target/debug/kubectl-mailcred
"""

import argparse
import base64
import imaplib
import json
import os
import re
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The relay sweeps upstream pools whose credential is gone every 15 s (smtp-relay/src/server.rs).
POOL_SWEEP_SECONDS = 15
TTL_SECONDS = 2


def read_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip().strip('"').strip("'")
    return env


def needles(user, password):
    """The plaintext, and the AUTH PLAIN / LOGIN encodings that are as good as plaintext."""
    pw = password.encode()
    return {
        "plaintext": pw,
        "auth-plain-base64": base64.b64encode(b"\0" + user.encode() + b"\0" + pw),
        "auth-login-base64": base64.b64encode(pw),
    }


def scan_memory(pid, wanted):
    """Finds each needle in the process's private writable mappings (heap, stacks, anonymous)."""
    hits = {name: [] for name in wanted}
    scanned = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            perms = fields[1]
            path = fields[5] if len(fields) > 5 else "[anon]"
            if not perms.startswith("rw") or path in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue  # guard pages and the like
            scanned += len(data)
            for name, needle in wanted.items():
                at = data.find(needle)
                while at != -1:
                    hits[name].append(f"{path}+{at:#x}")
                    at = data.find(needle, at + 1)
    return hits, scanned


def locked_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    return 0


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, name, ok, detail=""):
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f"  ({detail})" if detail and not ok else ""))
        if not ok:
            self.failed += 1


def start_sidecar(args, workdir, cred, key, tag):
    log = workdir / f"sidecar-{tag}.log"
    proc = subprocess.Popen(
        [args.sidecar, "--credential-file", str(cred), "--local-key-file", str(key), "--no-aws",
         "--smtp-listen", "127.0.0.1:0", "--imap-listen", "127.0.0.1:0",
         "--admin-listen", "127.0.0.1:0", "--cache-ttl-seconds", str(TTL_SECONDS),
         "--pod", "hygiene"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "debug"})
    deadline = time.time() + 30
    while time.time() < deadline:
        for line in log.read_text().splitlines():
            if "mailcred sidecar serving" in line:
                v = json.loads(line)
                fields = v.get("fields", v)
                port = lambda k: int(fields[k].rsplit(":", 1)[1])
                return proc, log, port("smtp"), port("imap")
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"sidecar did not start:\n{log.read_text()[-2000:]}")


def use_smtp(port, user):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = user, user, f"hygiene-{uuid.uuid4().hex[:8]}"
    msg.set_content("secret hygiene check")
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.send_message(msg)


def use_imap(port):
    m = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    m.login("app", "anything")
    typ, _ = m.select("INBOX", readonly=True)
    if typ != "OK":
        raise RuntimeError("SELECT INBOX failed")
    m.logout()


def scenario(args, checks, peers, workdir, cred, key, tag, use):
    user, password = peers["PEERS_USER"], peers["PEERS_PASSWORD"]
    wanted = needles(user, password)
    proc, log, smtp, imap = start_sidecar(args, workdir, cred, key, tag)
    pid = proc.pid
    try:
        hits, scanned = scan_memory(pid, wanted)
        checks.check(f"{tag}: password absent before first use ({scanned >> 20} MiB scanned)",
                     not any(hits.values()), hits)
        t0 = time.monotonic()
        if tag == "smtp":
            use(smtp, user)
        else:
            use(imap)
        hits, scanned = scan_memory(pid, wanted)
        elapsed = time.monotonic() - t0
        present = bool(hits["plaintext"])
        checks.check(f"{tag}: password PRESENT while cached (scan {elapsed:.1f}s after use, TTL {TTL_SECONDS}s)",
                     present or elapsed >= TTL_SECONDS,
                     "not found although cached: the scan cannot see the cache")
        if not present and elapsed >= TTL_SECONDS:
            print(f"     (inconclusive: use+scan took {elapsed:.1f}s >= TTL)")
        print(f"     copies while cached: " + ", ".join(f"{k}={len(v)}" for k, v in hits.items()))
        # Root has CAP_IPC_LOCK, so the cache's mlock cannot be refused here.
        checks.check(f"{tag}: cached password pages are mlocked (VmLck {locked_kib(pid)} kB)",
                     locked_kib(pid) > 0 or elapsed >= TTL_SECONDS)
        time.sleep(TTL_SECONDS + POOL_SWEEP_SECONDS + 3)
        hits, scanned = scan_memory(pid, wanted)
        checks.check(f"{tag}: password ABSENT after TTL + pool sweep ({scanned >> 20} MiB scanned)",
                     not hits["plaintext"], f"{len(hits['plaintext'])} copies at {hits['plaintext'][:6]}")
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
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = log.read_bytes()
    checks.check(f"{tag}: password absent from the sidecar log ({len(text)} bytes, RUST_LOG=debug)",
                 not any(n in text for n in wanted.values()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sidecar", default=str(REPO / "target/debug/mailcred-sidecar"))
    ap.add_argument("--plugin", default=str(REPO / "target/debug/kubectl-mailcred"))
    ap.add_argument("--only", choices=["smtp", "imap"])
    args = ap.parse_args()
    env_file = os.environ.get("MAILCRED_PEERS_ENV")
    if not env_file:
        raise SystemExit("MAILCRED_PEERS_ENV is not set: start the peers with e2e/peers/start.sh DIR "
                         "and export MAILCRED_PEERS_ENV=DIR/env")
    if os.geteuid() != 0:
        raise SystemExit("needs root: the sidecar is non-dumpable, /proc/PID/mem is closed to others")
    peers = read_env(env_file)
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="mailcred-hygiene-") as d:
        workdir = Path(d)
        os.chmod(workdir, 0o755)
        key = workdir / "local.key"
        subprocess.run([args.plugin, "keygen", "-o", str(key)], check=True, capture_output=True)
        cred = workdir / "mailcredential.yaml"
        r = subprocess.run(
            [args.plugin, "seal", "--name", "mail", "--namespace", "hygiene",
             "--username", peers["PEERS_USER"],
             "--smtp", f"localhost:{peers['PEERS_SMTP_STARTTLS_PORT']}",
             "--imap", f"localhost:{peers['PEERS_IMAP_TLS_PORT']}", "--imap-tls", "implicit",
             "--ca-file", peers["PEERS_CA_PEM"], "--service-account", "app",
             "--allowed-sender", peers["PEERS_USER"], "--allowed-recipient", "*@example.test",
             "--allowed-mailbox", "INBOX", "--kms", f"local:{key}", "--password-stdin",
             "-w", str(cred)],
            input=peers["PEERS_PASSWORD"] + "\n", capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"seal failed: {r.stderr}")
        checks.check("sealed YAML holds no plaintext", peers["PEERS_PASSWORD"] not in cred.read_text())
        if args.only in (None, "smtp"):
            scenario(args, checks, peers, workdir, cred, key, "smtp", use_smtp)
        if args.only in (None, "imap"):
            scenario(args, checks, peers, workdir, cred, key, "imap", use_imap)
    print(f"{checks.failed} check(s) failed" if checks.failed else "all hygiene checks passed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
