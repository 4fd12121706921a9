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
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "target/debug/kubectl-mailcred"
SIDECAR = REPO / "target/debug/mailcred-sidecar"


class Suite:
    def __init__(self, narrate):
        self.passed = 0
        self.failed = 0
        self.narrate = narrate
        self.outputs = []  # every client output, scanned for the password at the end

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}")
        else:
            self.failed += 1
            print(f"FAIL {name} {detail}".rstrip())
        return ok

    def say(self, text):
        if self.narrate:
            print(f"\n\033[1m{text}\033[0m", flush=True)

    def record(self, text):
        self.outputs.append(text if isinstance(text, str) else repr(text))
        return text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip()
    return env


def wait_until(pred, timeout, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


def http_get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read().decode()


def direct_imap(peers, user, password):
    ctx = ssl.create_default_context(cafile=peers["PEERS_CA_PEM"])
    m = imaplib.IMAP4_SSL("localhost", int(peers["PEERS_IMAP_TLS_PORT"]), ssl_context=ctx)
    m.login(user, password)
    return m


def delivered(peers, user, password, subject):
    m = direct_imap(peers, user, password)
    try:
        m.select("INBOX", readonly=True)
        typ, data = m.search(None, "SUBJECT", f'"{subject}"')
        return typ == "OK" and bool(data[0].split())
    finally:
        m.logout()


def message(sender, to, subject, from_header=None, body="hello from the app\n"):
    msg = EmailMessage()
    msg["From"] = from_header or sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def smtp_send(port, sender, to, subject, **kw):
    """Returns (code, text) of the final answer; 250 when accepted."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            s.send_message(message(sender, to, subject, **kw), from_addr=sender, to_addrs=to)
            return 250, "accepted"
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        return code, text.decode(errors="replace")
    except smtplib.SMTPResponseException as e:
        return e.smtp_code, e.smtp_error.decode(errors="replace")


class Sidecar:
    def __init__(self, workdir, cred, env, extra):
        self.smtp = free_port()
        self.imap = free_port()
        self.admin = free_port()
        self.log_path = workdir / "sidecar.log"
        self.log = open(self.log_path, "ab")
        args = [
            str(SIDECAR), "--credential-file", str(cred),
            "--smtp-listen", f"127.0.0.1:{self.smtp}",
            "--imap-listen", f"127.0.0.1:{self.imap}",
            "--admin-listen", f"127.0.0.1:{self.admin}",
            "--cache-ttl-seconds", "3", "--file-poll-ms", "200",
            "--pod", "e2e-app-0", "--upstream-timeout", "10",
        ] + extra
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def ready(self, timeout=30):
        return wait_until(lambda: http_get(f"http://127.0.0.1:{self.admin}/readyz")[0] == 200, timeout)

    def audit_lines(self):
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("target") == "audit":
                out.append(rec)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return None
        return self.proc.returncode


def seal(suite, peers, workdir, password, kms_flag, out, aws_env):
    args = [
        str(PLUGIN), "seal", "--name", "mail", "--namespace", "e2e",
        "--username", peers["PEERS_USER"],
        "--smtp", f"localhost:{peers['PEERS_SMTP_STARTTLS_PORT']}",
        "--imap", f"localhost:{peers['PEERS_IMAP_TLS_PORT']}", "--imap-tls", "implicit",
        "--ca-file", peers["PEERS_CA_PEM"],
        "--service-account", "app",
        "--allowed-sender", peers["PEERS_USER"],
        "--allowed-recipient", "*@example.test",
        "--max-recipients", "3", "--max-message-bytes", "1048576",
        "--allowed-mailbox", "INBOX",
        "--kms", kms_flag, "--password-stdin", "-w", str(out) + ".tmp",
    ]
    r = subprocess.run(args, input=password + "\n", capture_output=True, text=True, env=aws_env)
    suite.record(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"seal failed: {r.stderr}")
    os.replace(str(out) + ".tmp", out)  # atomic: the sidecar never reads half a file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--kms", choices=["aws", "local"], default="aws")
    ap.add_argument("--demo", action="store_true", help="narrate, local KMS, no fault injection")
    opts = ap.parse_args()
    suite = Suite(narrate=opts.demo)
    workdir = Path(opts.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    peers_dir = workdir / "peers"

    suite.say("Starting real mail servers on loopback: postfix (SMTP submission, TLS + AUTH), "
              "dovecot (IMAP) and moto (an AWS-KMS-compatible endpoint)...")
    subprocess.run([str(REPO / "e2e/peers/start.sh"), str(peers_dir)], check=True,
                   stdout=subprocess.DEVNULL if opts.demo else None)
    peers = read_env(peers_dir / "env")
    user, password = peers["PEERS_USER"], peers["PEERS_PASSWORD"]
    secrets = [password]
    aws_env = dict(os.environ)
    for k in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY"):
        aws_env[k] = peers[k]
    sidecar = None
    try:
        kms_mode = "local" if opts.demo else opts.kms
        cred = workdir / "mailcredential.yaml"
        extra = []
        if kms_mode == "aws":
            import boto3
            kms = boto3.client("kms", endpoint_url=peers["PEERS_KMS_ENDPOINT"], region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test")
            arn = kms.create_key(Description="mailcred e2e")["KeyMetadata"]["Arn"]
            kms_flag = f"aws:{arn}"
        else:
            key = workdir / "local.key"
            key.unlink(missing_ok=True)
            r = subprocess.run([str(PLUGIN), "keygen", "-o", str(key)], capture_output=True, text=True)
            suite.record(r.stderr)
            kms_flag = f"local:{key}"
            extra = ["--local-key-file", str(key), "--no-aws"]

        suite.say(f"1. The platform engineer seals the mailbox password of {user} "
                  f"({'local key file' if kms_mode == 'local' else 'AWS KMS key ' + kms_flag[4:]}), "
                  "typed once, through stdin:")
        seal(suite, peers, workdir, password, kms_flag, cred, aws_env)
        text = cred.read_text()
        if opts.demo:
            print("\n".join("   | " + l for l in text.splitlines() if "sealedSecret" in l or l.startswith("    ") and any(
                k in l for k in ("encryptedDataKey", "ciphertext", "nonce", "provider", "keyId"))))
        suite.check("sealed YAML holds no plaintext", password not in text)
        suite.check("sealed YAML is a MailCredential bound to e2e/mail",
                    "kind: MailCredential" in text and "namespace: e2e" in text)

        suite.say("2. The sidecar starts with only the sealed resource; it listens on 127.0.0.1 only.")
        sidecar = Sidecar(workdir, cred, aws_env, extra)
        suite.check("sidecar becomes ready", sidecar.ready(), sidecar.log_path.read_text()[-2000:])
        pid = sidecar.proc.pid

        subject = f"e2e-{uuid.uuid4().hex[:8]}"
        suite.say(f"3. The app sends '{subject}' to {user} over plain SMTP to 127.0.0.1:{sidecar.smtp}, no password:")
        code, text = smtp_send(sidecar.smtp, user, [user], subject)
        suite.check("smtplib: message accepted (250 only after upstream accepted)", code == 250, f"{code} {text}")
        landed = wait_until(lambda: delivered(peers, user, password, subject), 15)
        suite.check("smtplib: message is in the mailbox (read directly from dovecot)", landed)
        if opts.demo and landed:
            files = sorted((Path(peers["PEERS_MAILDIR_ROOT"]) / user / "Maildir").glob("*/*"))
            print(f"   landed in {files[-1] if files else 'the maildir'}")

        subj2 = f"e2e-swaks-{uuid.uuid4().hex[:8]}"
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(sidecar.smtp), "--from", user,
                            "--to", user, "--header", f"Subject: {subj2}", "--timeout", "60"],
                           capture_output=True, text=True)
        suite.record(r.stdout + r.stderr)
        suite.check("swaks: accepted", r.returncode == 0, r.stdout[-500:])
        suite.check("swaks: delivered", wait_until(lambda: delivered(peers, user, password, subj2), 15))

        subj3 = f"e2e-curl-{uuid.uuid4().hex[:8]}"
        mail_file = workdir / "curl-mail.txt"
        mail_file.write_text(f"From: {user}\r\nTo: {user}\r\nSubject: {subj3}\r\n\r\nfrom curl\r\n")
        r = subprocess.run(["curl", "-sS", f"smtp://127.0.0.1:{sidecar.smtp}", "--mail-from", user,
                            "--mail-rcpt", user, "--upload-file", str(mail_file)], capture_output=True, text=True)
        suite.record(r.stdout + r.stderr)
        suite.check("curl smtp://: accepted", r.returncode == 0, r.stderr)
        suite.check("curl smtp://: delivered", wait_until(lambda: delivered(peers, user, password, subj3), 15))

        suite.say("4. The policy refuses what the credential does not allow:")
        code, text = smtp_send(sidecar.smtp, "ceo@example.test", [user], "spoof")
        suite.check("sender not allowed -> 550 5.7.1", code == 550 and "5.7.1" in text, f"{code} {text}")
        if opts.demo:
            print(f"   MAIL FROM:<ceo@example.test> -> {code} {text}")
        code, text = smtp_send(sidecar.smtp, user, ["someone@elsewhere.example"], "exfil")
        suite.check("recipient not allowed -> 550 5.7.1", code == 550 and "5.7.1" in text, f"{code} {text}")
        if opts.demo:
            print(f"   RCPT TO:<someone@elsewhere.example> -> {code} {text}")
        code, text = smtp_send(sidecar.smtp, user, [user], "forged", from_header="ceo@example.test")
        suite.check("From header not allowed -> 550 5.7.1", code == 550 and "5.7.1" in text, f"{code} {text}")
        many = [f"u{i}@example.test" for i in range(4)]
        code, text = smtp_send(sidecar.smtp, user, many, "too many")
        suite.check("4 recipients over a limit of 3 -> refused", code in (452, 550) or code >= 400, f"{code} {text}")

        suite.say(f"5. The app reads its mail over plain IMAP on 127.0.0.1:{sidecar.imap}, any login:")
        m = imaplib.IMAP4("127.0.0.1", sidecar.imap, timeout=30)
        caps = " ".join(c if isinstance(c, str) else c.decode() for c in m.capabilities)
        suite.record(caps)
        suite.check("IMAP CAPABILITY has no upstream AUTH= or STARTTLS", "AUTH=" not in caps.replace("AUTH=PLAIN", "") and "STARTTLS" not in caps, caps)
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
            try:
                typ, data = m.store(ids[-1], "+FLAGS", "\\Deleted")
                refused = typ != "OK"
                detail = repr(data)
            except imaplib.IMAP4.error as e:
                refused, detail = True, str(e)
            suite.check("read-only: STORE refused with NOPERM", refused and "NOPERM" in detail, detail)
            if opts.demo:
                print(f"   STORE +FLAGS \\Deleted -> {detail}")
        try:
            typ, data = m.select("Trash")
            detail = repr(data)
            refused = typ != "OK"
        except imaplib.IMAP4.error as e:
            refused, detail = True, str(e)
        suite.check("mailbox outside allowedMailboxes refused", refused, detail)
        m.logout()

        r = subprocess.run(["curl", "-sS", "--max-time", "30", f"imap://127.0.0.1:{sidecar.imap}/INBOX",
                            "-u", "app:anything", "-X", f'SEARCH SUBJECT "{subject}"'],
                           capture_output=True, text=True)
        suite.record(r.stdout + r.stderr)
        suite.check("curl imap://: SEARCH through the proxy", r.returncode == 0 and "SEARCH" in r.stdout, r.stderr)

        suite.say("6. Every use left an audit line (no content, no secret) and metrics:")
        audit = sidecar.audit_lines()
        relayed = [a for a in audit if a.get("protocol") == "smtp" and a.get("outcome") == "relayed"]
        denied = [a for a in audit if a.get("protocol") == "smtp" and a.get("outcome") not in (None, "relayed")]
        sessions = [a for a in audit if a.get("event") == "imap_session"]
        suite.check("audit: one line per relayed message", len(relayed) >= 3, f"{len(relayed)} lines")
        suite.check("audit: refusals audited with their reason", len(denied) >= 3 and all(d.get("reason") for d in denied), repr(denied[:2]))
        suite.check("audit: IMAP session line", len(sessions) >= 1, repr(audit[-3:]))
        suite.check("audit lines carry credential and pod", all(a.get("credential") and a.get("pod") == "e2e-app-0" for a in relayed))
        if opts.demo and relayed:
            print("   " + json.dumps({k: relayed[0].get(k) for k in ("credential", "pod", "sender", "recipients", "size", "upstream_code", "outcome")}))
        status, metrics = http_get(f"http://127.0.0.1:{sidecar.admin}/metrics")
        suite.record(metrics)
        relayed_metric = re.search(r'mailcred_smtp_messages_total\{[^}]*outcome="relayed"[^}]*\} (\d+)', metrics)
        suite.check("metrics: relayed messages counted", relayed_metric is not None and int(relayed_metric.group(1)) >= 3,
                    metrics[:400])
        suite.check("metrics: policy denials by rule", "mailcred_smtp_policy_denials_total" in metrics)
        suite.check("metrics: KMS decrypts counted", "mailcred_kms_decrypts_total" in metrics)

        plog = Path(peers["PEERS_POSTFIX_LOG"]).read_text(errors="replace")
        dlog = Path(peers["PEERS_DOVECOT_LOG"]).read_text(errors="replace")
        suite.check("postfix saw TLS + SASL login as the credential's user",
                    f"sasl_username={user}" in plog and "TLS" in plog)
        suite.check("dovecot saw the proxy log in over TLS as the credential's user",
                    re.search(rf"Login: user=<{re.escape(user)}>.*TLS", dlog) is not None)

        if opts.demo:
            return suite

        # Rotation: new password upstream, re-seal, the running sidecar picks it up.
        new_password = uuid.uuid4().hex + "-rotated"
        secrets.append(new_password)
        subprocess.run([str(REPO / "e2e/peers/set-password.sh"), str(peers_dir), user],
                       input=new_password + "\n", text=True, check=True)
        seal(suite, peers, workdir, new_password, kms_flag, cred, aws_env)
        time.sleep(1.0)  # the sidecar polls the file every 200 ms
        subj4 = f"e2e-rotated-{uuid.uuid4().hex[:8]}"
        code, text = smtp_send(sidecar.smtp, user, [user], subj4)
        suite.check("rotation: send works with the re-sealed password", code == 250, f"{code} {text}")
        suite.check("rotation: delivered", wait_until(lambda: delivered(peers, user, new_password, subj4), 15))
        m = imaplib.IMAP4("127.0.0.1", sidecar.imap, timeout=30)
        typ, _ = m.login("app", "x")
        suite.check("rotation: IMAP logs in upstream with the new password", typ == "OK")
        m.logout()
        suite.check("rotation: no restart", sidecar.proc.pid == pid and sidecar.proc.poll() is None)

        # Upstream SMTP down: a temporary failure, nothing acknowledged; recovery after.
        conf = peers["PEERS_POSTFIX_CONFIG"]
        subprocess.run(["postfix", "-c", conf, "stop"], capture_output=True)
        wait_until(lambda: not Path(conf).exists() or subprocess.run(["postfix", "-c", conf, "status"], capture_output=True).returncode != 0, 10)
        code, text = smtp_send(sidecar.smtp, user, [user], "while-down")
        suite.check("upstream SMTP down -> 4xx temporary failure", 400 <= code < 500, f"{code} {text}")
        subprocess.run(["postfix", "-c", conf, "start"], capture_output=True)
        wait_until(lambda: socket.create_connection(("127.0.0.1", int(peers["PEERS_SMTP_STARTTLS_PORT"])), 1).close() is None, 15)
        subj5 = f"e2e-recovered-{uuid.uuid4().hex[:8]}"
        ok = wait_until(lambda: smtp_send(sidecar.smtp, user, [user], subj5)[0] == 250, 20, step=1)
        suite.check("upstream SMTP back -> sending recovers without restart", ok)

        if kms_mode == "aws":
            # KMS down: once the cached password expires, new sessions get a temporary failure.
            moto_pid = int((peers_dir / "moto.pid").read_text().strip())
            os.kill(moto_pid, signal.SIGTERM)
            time.sleep(4.5)  # cache TTL 3 s + expiry tick
            seal_touch = cred.read_text()
            cred.write_text(seal_touch)  # unchanged content; the expired cache forces a decrypt
            code, text = smtp_send(sidecar.smtp, user, [user], "kms-down")
            suite.check("KMS down -> 4xx temporary failure", 400 <= code < 500, f"{code} {text}")
            m = imaplib.IMAP4("127.0.0.1", sidecar.imap, timeout=60)
            try:
                typ, data = m.login("app", "x")
                detail = repr(data)
                unavailable = typ != "OK"
            except imaplib.IMAP4.error as e:
                unavailable, detail = True, str(e)
            suite.check("KMS down -> IMAP LOGIN NO [UNAVAILABLE]", unavailable and "UNAVAILABLE" in detail, detail)

        env_file = Path(f"/proc/{sidecar.proc.pid}/environ").read_bytes().decode(errors="replace")
        cmdline = Path(f"/proc/{sidecar.proc.pid}/cmdline").read_bytes().decode(errors="replace")
        suite.check("password not in the sidecar's environ or cmdline",
                    not any(s in env_file or s in cmdline for s in secrets))
        rc = sidecar.stop()
        suite.check("SIGTERM: sidecar exits cleanly", rc == 0, f"exit {rc}")
        return suite
    finally:
        if sidecar is not None:
            sidecar.stop()
        subprocess.run([str(REPO / "e2e/peers/stop.sh"), str(peers_dir)], capture_output=True)
        # Hygiene: the plaintext must appear in no log or output of the run.
        leaks = []
        for path in workdir.rglob("*"):
            if path.is_file() and path.name not in ("passwd", "users", "env") and path.suffix != ".key":
                data = path.read_bytes()
                for s in secrets:
                    if s.encode() in data:
                        leaks.append(str(path))
        for out in suite.outputs:
            for s in secrets:
                if s in out:
                    leaks.append("client output")
        suite.check("no plaintext password in any log, audit line, metric or output", not leaks, repr(sorted(set(leaks))))


if __name__ == "__main__":
    s = None
    try:
        s = main()
    finally:
        pass
    print(f"\n{s.passed} passed, {s.failed} failed" if s else "suite did not complete")
    sys.exit(0 if s and s.failed == 0 else 1)
