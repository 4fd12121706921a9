#!/usr/bin/env python3
"""Registration page end to end, in a real Chromium (docs/link-sealing.md).

`kubectl-mailcred request` writes pending MailCredentials into a directory and prints their
links; `mailcred-linkpage` serves them over HTTPS from that directory (its file store);
browser.mjs (Playwright + Debian's Chromium) opens the owner's link, checks what the page shows,
types the password and submits, then tries every refusal. Afterwards this script replays the
captured ciphertext onto another request (it does not open: the binding), checks the service
still serves another client after the brute force, and has the real sidecar send mail through
the real postfix with the credential the browser sealed.

Usage: run.py WORKDIR [--shots DIR]   (needs MAILCRED_PEERS_ENV, or starts its own peers)
"""
import argparse
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))
from mailcred_e2e import PLUGIN, REPO  # noqa: E402
from mailcred_e2e import peers as peerlib  # noqa: E402
from mailcred_e2e.checks import Checks  # noqa: E402
from mailcred_e2e.leaks import find_leaks  # noqa: E402
from mailcred_e2e.mail import smtp_send  # noqa: E402
from mailcred_e2e.sealing import smtp_endpoint  # noqa: E402
from mailcred_e2e.sidecar import Sidecar, file_source  # noqa: E402
from mailcred_e2e.wait import wait_until  # noqa: E402

LINKPAGE = REPO / "target/debug/mailcred-linkpage"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BAD_TOKEN_LIMIT = 10
NAMESPACE = "e2e"


def request(creds, name, *, user, peers, key_pub, base, replace=False, fmt="yaml"):
    """A pending credential in creds/NAME.yaml; returns its link."""
    host, port, tls = smtp_endpoint(peers)
    args = [str(PLUGIN), "request", "--name", name, "--namespace", NAMESPACE, "--username", user,
            "--smtp", f"{host}:{port}", "--smtp-tls", tls, "--ca-file", peers["PEERS_CA_PEM"],
            "--service-account", "app", "--allowed-sender", user, "--allowed-recipient", "*@example.test",
            "--kms", f"local:{key_pub}", "--url", base, "--requested-by", "platform@example.test",
            "--expires", "10m", "-o", fmt, "-w", str(creds / f"{name}.yaml")]
    if replace:
        args.append("--replace")
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise SystemExit(f"request {name} failed: {r.stderr}")
    url = r.stdout.strip()
    assert url.startswith(base + "/#"), url
    return url, r.stdout + r.stderr


class Page:
    """HTTPS calls to the linkpage from a chosen source address, verifying its certificate."""

    def __init__(self, port, ca):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=ca)

    def call(self, method, path, body=None, source="127.0.0.1"):
        conn = http.client.HTTPSConnection("localhost", self.port, context=self.ctx, timeout=10,
                                           source_address=(source, 0))
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        conn.request(method, path, body=data, headers={"content-type": "application/json"})
        r = conn.getresponse()
        text = r.read().decode(errors="replace")
        conn.close()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


def link_parts(url):
    ns, name, token = url.split("#", 1)[1].split("/")
    return {"namespace": ns, "name": name, "token": token}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--shots", type=Path, default=REPO / "docs/images")
    opts = ap.parse_args()
    work = opts.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    opts.shots.mkdir(parents=True, exist_ok=True)
    suite = Checks()
    own_peers = "MAILCRED_PEERS_ENV" not in os.environ
    peers = peerlib.start(work / "peers", quiet=True) if own_peers else peerlib.from_environment()
    user, password = peers["PEERS_USER"], peers["PEERS_PASSWORD"]
    procs = []
    started = time.monotonic()
    try:
        key, key_pub = work / "owner-rsa.key", work / "owner-rsa.pub"
        for p in (key, key_pub):
            p.unlink(missing_ok=True)
        r = subprocess.run([str(PLUGIN), "keygen", "--rsa", "-o", str(key), "--public-output", str(key_pub)],
                           capture_output=True, text=True, check=True)
        suite.record(r.stderr)
        creds = work / "creds"
        creds.mkdir(exist_ok=True)
        for old in creds.glob("*.yaml"):
            old.unlink()
        tls_dir = Path(peers["PEERS_CA_PEM"]).parent
        log_path = work / "linkpage.log"
        log = open(log_path, "wb")
        lp = subprocess.Popen([str(LINKPAGE), "--listen", "127.0.0.1:0", "--tls-cert", str(tls_dir / "server.pem"),
                               "--tls-key", str(tls_dir / "server.key"), "--public-key", f"local:{key_pub}",
                               "--credentials-dir", str(creds), "--bad-tokens-per-window", str(BAD_TOKEN_LIMIT)],
                              stdout=log, stderr=subprocess.STDOUT)
        procs.append(lp)
        port = None

        def serving():
            nonlocal port
            m = re.search(r'"listen":"127\.0\.0\.1:(\d+)"', log_path.read_text(errors="replace"))
            port = int(m.group(1)) if m else None
            return port is not None
        suite.check("linkpage serving on loopback HTTPS", wait_until(serving, 15), log_path.read_text()[-800:])
        base = f"https://127.0.0.1:{port}"
        page = Page(port, peers["PEERS_CA_PEM"])

        links = {}
        for name in ("billing", "support", "old", "replay-target"):
            links[name], out = request(creds, name, user=user, peers=peers, key_pub=key_pub, base=base)
            suite.record(out)
        text = (creds / "billing.yaml").read_text()
        suite.check("request: pending YAML has a seal request and no sealed secret",
                    "sealRequest:" in text and "sealedSecret" not in text, text[:400])
        suite.check("request: only the token's SHA-256 is stored",
                    link_parts(links["billing"])["token"] not in text and re.search(r"tokenSha256: '?[0-9a-f]{64}", text), text)
        # Expiry: time passes for "old" (its expiresAt moved into the past in the file).
        past = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        old = creds / "old.yaml"
        old.write_text(re.sub(r"expiresAt: .*", f"expiresAt: {past}", old.read_text()))
        # A credential that already holds a secret (sealed with `seal` meanwhile) and a link
        # made without --replace.
        sealed_url, _ = request(creds, "sealed", user=user, peers=peers, key_pub=key_pub, base=base, fmt="json")
        add_secret(creds / "sealed.yaml", key, user, peers)
        try:
            request(creds, "sealed", user=user, peers=peers, key_pub=key_pub, base=base)
            refused = False
        except SystemExit as e:
            refused = "--replace" in str(e)
        suite.check("request: -w over a sealed credential without --replace is refused", refused)
        billing = link_parts(links["billing"])
        tok = billing["token"]
        tampered = tok[:10] + ("A" if tok[10] != "A" else "B") + tok[11:]
        cfg = {
            "base": base, "chromium": CHROMIUM, "shots": str(opts.shots),
            "username": user, "smtpHost": "localhost", "credential": f"{NAMESPACE}/billing",
            "requestedBy": "platform@example.test", "ownerToken": tok,
            "csp": csp(), "bruteForce": 20, "badTokenLimit": BAD_TOKEN_LIMIT, "out": str(work / "browser.json"),
            "links": {
                "owner": links["billing"], "expired": links["old"], "sealed": sealed_url,
                "tampered": f"{base}/#{NAMESPACE}/billing/{tampered}",
                "foreign": f"{base}/#{NAMESPACE}/billing/{link_parts(links['support'])['token']}",
                "unknownName": f"{base}/#{NAMESPACE}/nobody/{tok}",
            },
        }
        (work / "browser-config.json").write_text(json.dumps(cfg))
        t_browser = time.monotonic()
        # The password reaches the browser script through its environment only (not a file).
        r = subprocess.run(["node", str(HERE / "browser.mjs"), str(work / "browser-config.json")],
                           capture_output=True, text=True, timeout=180, cwd=HERE,
                           env=dict(os.environ, LINKPAGE_E2E_PASSWORD=password))
        suite.record(r.stdout + r.stderr)
        suite.check("browser suite exited cleanly", r.returncode == 0, r.stderr[-1500:])
        browser = json.loads((work / "browser.json").read_text()) if (work / "browser.json").exists() else {"results": []}
        for res in browser["results"]:
            suite.check(f"browser: {res['name']}", res["ok"], res["detail"])
        print(f"(browser: {time.monotonic() - t_browser:.1f} s, {browser.get('requests')} requests)")

        # The service stays up for everyone else while 127.0.0.1 is limited.
        status, _ = page.call("GET", "/healthz", source="127.0.0.2")
        suite.check("after the brute force: the service answers another client", status == 200, status)
        replay_checks(page, suite, browser.get("sealBody"), links, key, creds)
        mail_checks(suite, work, peers, creds, key)
        suite.check("audit: opened, sealed and refused lines with credential and client, no token",
                    audit_ok(log_path, tok), log_path.read_text()[-600:])
        leaks = find_leaks(work, [password], suite.outputs)
        suite.check("the password is in no file or output of the run", not leaks, leaks)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        if own_peers:
            peerlib.stop(work / "peers")
    print(f"linkpage e2e: {suite.summary()} in {time.monotonic() - started:.1f} s")
    return suite.exit_status()


def csp():
    src = (REPO / "linkpage/src/http.rs").read_text()
    return re.search(r'pub const CSP: &str = "([^"]+)"', src).group(1)


def add_secret(path, key, user, peers):
    """Puts a sealed secret (from `kubectl-mailcred seal`, same spec) into a pending JSON file."""
    resource = json.loads(path.read_text())
    host, port, tls = smtp_endpoint(peers)
    r = subprocess.run([str(PLUGIN), "seal", "--name", resource["metadata"]["name"], "--namespace", NAMESPACE,
                        "--username", user, "--smtp", f"{host}:{port}", "--smtp-tls", tls,
                        "--ca-file", peers["PEERS_CA_PEM"], "--service-account", "app",
                        "--kms", f"local:{key}", "--password-stdin", "-o", "json"],
                       input="an-older-password\n", capture_output=True, text=True, check=True)
    resource["spec"]["sealedSecret"] = json.loads(r.stdout)["spec"]["sealedSecret"]
    path.write_text(json.dumps(resource))


def replay_checks(page, suite, seal_body, links, key, creds):
    """The captured POST of billing, replayed on replay-target."""
    if not seal_body:
        suite.check("replay: a captured seal POST exists", False)
        return
    captured = json.loads(seal_body)
    target = link_parts(links["replay-target"])
    status, answer = page.call("POST", "/api/seal", dict(captured, **target), source="127.0.0.2")
    suite.check("replay as captured: refused, the associated data differs (409 changed)",
                status == 409 and answer.get("error") == "changed", (status, answer))
    status, opened = page.call("POST", "/api/open", target, source="127.0.0.2")
    status, answer = page.call("POST", "/api/seal", dict(captured, **target, aadSha256=opened.get("aadSha256")),
                               source="127.0.0.2")
    suite.check("replay with the target's digest: stored (the service cannot tell)", status == 200, answer)
    r = subprocess.run([str(PLUGIN), "verify", "-f", str(creds / "replay-target.yaml"), "--local-key-file", str(key)],
                       capture_output=True, text=True)
    suite.record(r.stdout + r.stderr)
    suite.check("replayed ciphertext does not open for the other namespace/name (binding)",
                r.returncode != 0 and "does not open for this MailCredential" in r.stderr, r.stderr)


def mail_checks(suite, work, peers, creds, key):
    cred = creds / "billing.yaml"
    r = subprocess.run([str(PLUGIN), "verify", "-f", str(cred), "--local-key-file", str(key)],
                       capture_output=True, text=True)
    suite.record(r.stdout + r.stderr)
    suite.check("verify: the browser-sealed secret opens", r.returncode == 0, r.stderr)
    sc = Sidecar(work / "sidecar.log", file_source(cred, key), pod="linkpage-e2e-0",
                 extra=["--upstream-timeout", "10"])
    try:
        suite.check("sidecar ready with the browser-sealed credential", sc.ready(), sc.tail())
        user = peers["PEERS_USER"]
        subject = f"linkpage-{uuid.uuid4().hex[:8]}"
        code, text, _ = smtp_send(sc.smtp, user, [user], subject)
        suite.check("sidecar sent mail through postfix with it (250)", code == 250, f"{code} {text}")
        suite.check("the message was delivered",
                    wait_until(lambda: peerlib.delivered(peers, user, peers["PEERS_PASSWORD"], subject), 15))
    finally:
        sc.stop()


def audit_ok(log_path, token):
    lines = [json.loads(l) for l in log_path.read_text().splitlines() if l.startswith("{")]
    audit = [l for l in lines if l.get("target") == "audit"]
    events = {(a["fields"].get("event"), a["fields"].get("reason")) for a in audit}
    needed = {("link_opened", "ok"), ("sealed", "ok"), ("refused", "used"), ("refused", "expired"),
              ("refused", "unknown"), ("refused", "rate_limited")}
    with_ids = all(a["fields"].get("client") and a["fields"].get("credential") for a in audit)
    return needed <= events and with_ids and token not in log_path.read_text()


if __name__ == "__main__":
    sys.exit(main())
