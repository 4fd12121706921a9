#!/usr/bin/env python3
"""Local end-to-end suite (and, with --demo, the narrated one-command demo).

Real postfix + dovecot + moto on loopback (e2e/peers), a credential sealed with
`kubectl-mailcred seal`, `mailcred-sidecar --credential-file`, and real clients (python
smtplib/imaplib, swaks, curl) playing the application. Checks delivery, policy refusals,
audit lines, metrics, rotation without restart, temporary failures when KMS or upstream are
down, and that the password appears in no log or output of the run.
"""
import argparse
import imaplib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "lib"))
from mailcred_e2e import peers as peerlib  # noqa: E402
from mailcred_e2e.checks import Checks  # noqa: E402
from mailcred_e2e.leaks import find_leaks  # noqa: E402
from mailcred_e2e.mail import imap_login, refused, smtp_send  # noqa: E402
from mailcred_e2e.sealing import imap_endpoint, keygen, seal, smtp_endpoint  # noqa: E402
from mailcred_e2e.sidecar import Sidecar, file_source  # noqa: E402
from mailcred_e2e.wait import wait_until  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import observability  # noqa: E402
import oauth_step  # noqa: E402


class Suite(Checks):
    """The check recorder, plus the demo's narration."""

    def __init__(self, narrate):
        super().__init__()
        self.narrate = narrate

    def say(self, text):
        if self.narrate:
            print(f"\n\033[1m{text}\033[0m", flush=True)


class Run:
    """What the steps share: the peers, the sealed credential and the running sidecar."""

    def __init__(self, suite, workdir, peers, kms_mode):
        self.suite, self.workdir, self.peers = suite, workdir, peers
        self.peers_dir = workdir / "peers"
        self.user, self.password = peers["PEERS_USER"], peers["PEERS_PASSWORD"]
        self.secrets = [self.password]
        self.aws_env = peerlib.aws_env(peers)
        self.kms_mode = kms_mode
        self.cred = workdir / "mailcredential.yaml"
        self.local_key = None
        self.kms_flag = None
        self.sidecar = None

    def delivered(self, subject, password=None):
        return wait_until(lambda: peerlib.delivered(self.peers, self.user, password or self.password, subject), 15)

    def send(self, sender, to, subject, **kw):
        code, text, _ = smtp_send(self.sidecar.smtp, sender, to, subject, **kw)
        return code, text

    def seal(self, password):
        out = seal(self.cred, user=self.user, password=password, kms=self.kms_flag,
                   ca_file=self.peers["PEERS_CA_PEM"], smtp=smtp_endpoint(self.peers),
                   imap=imap_endpoint(self.peers), namespace="e2e", max_recipients=3,
                   max_message_bytes=1048576, env=self.aws_env)
        self.suite.record(out)


def choose_kms(run):
    if run.kms_mode == "aws":
        run.kms_flag = "aws:" + peerlib.create_kms_key(run.peers, "mailcred e2e")
    else:
        run.local_key = run.workdir / "local.key"
        run.suite.record(keygen(run.local_key))
        run.kms_flag = f"local:{run.local_key}"


def step_seal(run, demo):
    suite = run.suite
    suite.say(f"1. The platform engineer seals the mailbox password of {run.user} "
              f"({'local key file' if run.kms_mode == 'local' else 'AWS KMS key ' + run.kms_flag[4:]}), "
              "typed once, through stdin:")
    run.seal(run.password)
    text = run.cred.read_text()
    if demo:
        print("\n".join("   | " + l for l in text.splitlines() if "sealedSecret" in l or l.startswith("    ") and any(
            k in l for k in ("encryptedDataKey", "ciphertext", "nonce", "provider", "keyId"))))
    suite.check("sealed YAML holds no plaintext", run.password not in text)
    suite.check("sealed YAML is a MailCredential bound to e2e/mail",
                "kind: MailCredential" in text and "namespace: e2e" in text)


def step_start_sidecar(run):
    run.suite.say("2. The sidecar starts with only the sealed resource; it listens on 127.0.0.1 only.")
    env = dict(run.aws_env, RUST_LOG=observability.RUST_LOG)
    run.sidecar = Sidecar(run.workdir / "sidecar.log", file_source(run.cred, run.local_key), pod="e2e-app-0",
                          env=env, cache_ttl=3, metrics_port=True,
                          extra=["--file-poll-ms", "200", "--upstream-timeout", "10"])
    run.suite.check("sidecar becomes ready", run.sidecar.ready(), run.sidecar.text()[-2000:])


def step_send(run, demo):
    suite, sc, user = run.suite, run.sidecar, run.user
    subject = f"e2e-{uuid.uuid4().hex[:8]}"
    suite.say(f"3. The app sends '{subject}' to {user} over plain SMTP to 127.0.0.1:{sc.smtp}, no password:")
    code, text = run.send(user, [user], subject)
    suite.check("smtplib: message accepted (250 only after upstream accepted)", code == 250, f"{code} {text}")
    landed = run.delivered(subject)
    suite.check("smtplib: message is in the mailbox (read directly from dovecot)", landed)
    if demo and landed:
        files = sorted((Path(run.peers["PEERS_MAILDIR_ROOT"]) / user / "Maildir").glob("*/*"))
        print(f"   landed in {files[-1] if files else 'the maildir'}")

    subj2 = f"e2e-swaks-{uuid.uuid4().hex[:8]}"
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(sc.smtp), "--from", user,
                        "--to", user, "--header", f"Subject: {subj2}", "--timeout", "60"],
                       capture_output=True, text=True)
    suite.record(r.stdout + r.stderr)
    suite.check("swaks: accepted", r.returncode == 0, r.stdout[-500:])
    suite.check("swaks: delivered", run.delivered(subj2))

    subj3 = f"e2e-curl-{uuid.uuid4().hex[:8]}"
    mail_file = run.workdir / "curl-mail.txt"
    mail_file.write_text(f"From: {user}\r\nTo: {user}\r\nSubject: {subj3}\r\n\r\nfrom curl\r\n")
    r = subprocess.run(["curl", "-sS", f"smtp://127.0.0.1:{sc.smtp}", "--mail-from", user,
                        "--mail-rcpt", user, "--upload-file", str(mail_file)], capture_output=True, text=True)
    suite.record(r.stdout + r.stderr)
    suite.check("curl smtp://: accepted", r.returncode == 0, r.stderr)
    suite.check("curl smtp://: delivered", run.delivered(subj3))
    return subject


def step_policy(run, demo):
    suite, user = run.suite, run.user
    suite.say("4. The policy refuses what the credential does not allow:")
    code, text = run.send("ceo@example.test", [user], "spoof")
    suite.check("sender not allowed -> 550 5.7.1", code == 550 and "5.7.1" in text, f"{code} {text}")
    if demo:
        print(f"   MAIL FROM:<ceo@example.test> -> {code} {text}")
    code, text = run.send(user, ["someone@elsewhere.example"], "exfil")
    suite.check("recipient not allowed -> 550 5.7.1", code == 550 and "5.7.1" in text, f"{code} {text}")
    if demo:
        print(f"   RCPT TO:<someone@elsewhere.example> -> {code} {text}")
    code, text = run.send(user, [user], "forged", from_header="ceo@example.test")
    suite.check("From header not allowed -> 550 5.7.1", code == 550 and "5.7.1" in text, f"{code} {text}")
    many = [f"u{i}@example.test" for i in range(4)]
    code, text = run.send(user, many, "too many")
    suite.check("4 recipients over a limit of 3 -> refused", code in (452, 550) or code >= 400, f"{code} {text}")


def step_imap(run, subject, demo):
    suite, sc = run.suite, run.sidecar
    suite.say(f"5. The app reads its mail over plain IMAP on 127.0.0.1:{sc.imap}, any login:")
    m = imaplib.IMAP4("127.0.0.1", sc.imap, timeout=30)
    caps = " ".join(c if isinstance(c, str) else c.decode() for c in m.capabilities)
    suite.record(caps)
    suite.check("IMAP CAPABILITY has no upstream AUTH= or STARTTLS",
                "AUTH=" not in caps.replace("AUTH=PLAIN", "") and "STARTTLS" not in caps, caps)
    typ, _ = m.login("app", "anything")
    suite.check("IMAP LOGIN accepted locally", typ == "OK")
    typ, data = m.select("INBOX", readonly=True)
    suite.check("SELECT INBOX ok", typ == "OK", repr(data))
    typ, data = m.search(None, "SUBJECT", f'"{subject}"')
    ids = data[0].split() if typ == "OK" else []
    suite.check("SEARCH finds the message sent through SMTP", bool(ids), repr(data))
    if ids:
        typ, data = m.fetch(ids[-1], "(BODY.PEEK[])")
        body = data[0][1].decode(errors="replace") if typ == "OK" else ""
        suite.record(body)
        suite.check("FETCH returns the message", subject in body and "hello from the app" in body)
        no, detail = refused(lambda: m.store(ids[-1], "+FLAGS", "\\Deleted"))
        suite.check("read-only: STORE refused with NOPERM", no and "NOPERM" in detail, detail)
        if demo:
            print(f"   STORE +FLAGS \\Deleted -> {detail}")
    no, detail = refused(lambda: m.select("Trash"))
    suite.check("mailbox outside allowedMailboxes refused", no, detail)
    m.logout()

    r = subprocess.run(["curl", "-sS", "--max-time", "30", f"imap://127.0.0.1:{sc.imap}/INBOX",
                        "-u", "app:anything", "-X", f'SEARCH SUBJECT "{subject}"'],
                       capture_output=True, text=True)
    suite.record(r.stdout + r.stderr)
    suite.check("curl imap://: SEARCH through the proxy", r.returncode == 0 and "SEARCH" in r.stdout, r.stderr)


def step_audit_and_metrics(run, demo):
    suite, sc, user = run.suite, run.sidecar, run.user
    suite.say("6. Every use left an audit line (no content, no secret) and metrics:")
    audit = sc.audit()
    relayed = [a for a in audit if a.get("protocol") == "smtp" and a.get("outcome") == "relayed"]
    denied = [a for a in audit if a.get("protocol") == "smtp" and a.get("outcome") not in (None, "relayed")]
    sessions = [a for a in audit if a.get("event") == "imap_session"]
    suite.check("audit: one line per relayed message", len(relayed) >= 3, f"{len(relayed)} lines")
    suite.check("audit: refusals audited with their reason",
                len(denied) >= 3 and all(d.get("reason") for d in denied), repr(denied[:2]))
    suite.check("audit: IMAP session line", len(sessions) >= 1, repr(audit[-3:]))
    suite.check("audit lines carry credential and pod",
                all(a.get("credential") and a.get("pod") == "e2e-app-0" for a in relayed))
    if demo and relayed:
        print("   " + json.dumps({k: relayed[0].get(k) for k in (
            "credential", "pod", "sender", "recipients", "size", "upstream_code", "outcome")}))
    metrics = suite.record(sc.metrics())
    relayed_metric = re.search(r'mailcred_smtp_messages_total\{[^}]*outcome="relayed"[^}]*\} (\d+)', metrics)
    suite.check("metrics: relayed messages counted",
                relayed_metric is not None and int(relayed_metric.group(1)) >= 3, metrics[:400])
    observability.step_audit_despite_rust_log(run)
    observability.step_metrics_port(run)

    plog = Path(run.peers["PEERS_POSTFIX_LOG"]).read_text(errors="replace")
    dlog = Path(run.peers["PEERS_DOVECOT_LOG"]).read_text(errors="replace")
    suite.check("postfix saw TLS + SASL login as the credential's user",
                f"sasl_username={user}" in plog and "TLS" in plog)
    suite.check("dovecot saw the proxy log in over TLS as the credential's user",
                re.search(rf"Login: user=<{re.escape(user)}>.*TLS", dlog) is not None)


def step_rotation(run):
    """New password upstream, re-seal, the running sidecar picks it up."""
    suite, sc, user = run.suite, run.sidecar, run.user
    pid = sc.pid
    new_password = uuid.uuid4().hex + "-rotated"
    run.secrets.append(new_password)
    peerlib.set_password(run.peers_dir, user, new_password)
    run.seal(new_password)
    time.sleep(1.0)  # the sidecar polls the file every 200 ms
    subj4 = f"e2e-rotated-{uuid.uuid4().hex[:8]}"
    code, text = run.send(user, [user], subj4)
    suite.check("rotation: send works with the re-sealed password", code == 250, f"{code} {text}")
    suite.check("rotation: delivered", run.delivered(subj4, new_password))
    ok, _, m = imap_login(sc.imap, "app", "x", timeout=30)
    suite.check("rotation: IMAP logs in upstream with the new password", ok)
    if m:
        m.logout()
    suite.check("rotation: no restart", sc.pid == pid and sc.proc.poll() is None)


def step_upstream_down(run):
    """Upstream SMTP down: a temporary failure, nothing acknowledged; recovery after."""
    suite, user = run.suite, run.user
    conf = run.peers["PEERS_POSTFIX_CONFIG"]
    subprocess.run(["postfix", "-c", conf, "stop"], capture_output=True)
    wait_until(lambda: not Path(conf).exists() or subprocess.run(
        ["postfix", "-c", conf, "status"], capture_output=True).returncode != 0, 10)
    code, text = run.send(user, [user], "while-down")
    suite.check("upstream SMTP down -> 4xx temporary failure", 400 <= code < 500, f"{code} {text}")
    subprocess.run(["postfix", "-c", conf, "start"], capture_output=True)
    port = int(run.peers["PEERS_SMTP_STARTTLS_PORT"])
    wait_until(lambda: socket.create_connection(("127.0.0.1", port), 1).close() is None, 15)
    subj5 = f"e2e-recovered-{uuid.uuid4().hex[:8]}"
    ok = wait_until(lambda: run.send(user, [user], subj5)[0] == 250, 20, step=1)
    suite.check("upstream SMTP back -> sending recovers without restart", ok)


def step_kms_down(run):
    """KMS down: once the cached password expires, new sessions get a temporary failure."""
    suite, user = run.suite, run.user
    moto_pid = int((run.peers_dir / "moto.pid").read_text().strip())
    os.kill(moto_pid, signal.SIGTERM)
    time.sleep(4.5)  # cache TTL 3 s + expiry tick
    run.cred.write_text(run.cred.read_text())  # unchanged content; the expired cache forces a decrypt
    code, text = run.send(user, [user], "kms-down")
    suite.check("KMS down -> 4xx temporary failure", 400 <= code < 500, f"{code} {text}")
    ok, detail, _ = imap_login(run.sidecar.imap, "app", "x", timeout=60)
    suite.check("KMS down -> IMAP LOGIN NO [UNAVAILABLE]", not ok and "UNAVAILABLE" in detail, detail)


def step_process_hygiene(run):
    sc = run.sidecar
    environ = Path(f"/proc/{sc.pid}/environ").read_bytes().decode(errors="replace")
    cmdline = Path(f"/proc/{sc.pid}/cmdline").read_bytes().decode(errors="replace")
    run.suite.check("password not in the sidecar's environ or cmdline",
                    not any(s in environ or s in cmdline for s in run.secrets))
    rc = sc.stop(timeout=40)
    run.suite.check("SIGTERM: sidecar exits cleanly", rc == 0, f"exit {rc}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--kms", choices=["aws", "local"], default="aws")
    ap.add_argument("--demo", action="store_true", help="narrate, local KMS, no fault injection")
    opts = ap.parse_args()
    suite = Suite(narrate=opts.demo)
    workdir = Path(opts.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    suite.say("Starting real mail servers on loopback: postfix (SMTP submission, TLS + AUTH), "
              "dovecot (IMAP) and moto (an AWS-KMS-compatible endpoint)...")
    peers = peerlib.start(workdir / "peers", quiet=opts.demo)
    run = Run(suite, workdir, peers, "local" if opts.demo else opts.kms)
    try:
        choose_kms(run)
        step_seal(run, opts.demo)
        step_start_sidecar(run)
        subject = step_send(run, opts.demo)
        step_policy(run, opts.demo)
        step_imap(run, subject, opts.demo)
        step_audit_and_metrics(run, opts.demo)
        oauth_step.step_oauth(run, opts.demo)
        if opts.demo:
            return suite
        observability.step_wrong_password(run)
        step_rotation(run)
        step_upstream_down(run)
        if run.kms_mode == "aws":
            step_kms_down(run)
        step_process_hygiene(run)
        return suite
    finally:
        if run.sidecar is not None:
            run.sidecar.stop(timeout=40)
        peerlib.stop(run.peers_dir)
        # Hygiene: the plaintext must appear in no log or output of the run.
        leaks = find_leaks(workdir, run.secrets, suite.outputs)
        suite.check("no plaintext password in any log, audit line, metric or output", not leaks, repr(leaks))


if __name__ == "__main__":
    s = main()
    print(f"\n{s.summary()}")
    sys.exit(s.exit_status())
