"""The local suite's OAuth step: a sidecar running a SEALED OAuth MailCredential
(client credentials at the peers' oidc-provider, client_secret_post) end to end. The app sends
over plain SMTP to the sidecar -> token from oidc-provider -> XOAUTH2 to postfix (dovecot
introspects the token) -> delivered; and reads over IMAP (XOAUTH2 to dovecot). The client
secret joins the leak scan's secrets; no token-shaped string may be in the sidecar's log."""
import imaplib
import re
import uuid
from pathlib import Path

from mailcred_e2e import oauth
from mailcred_e2e.mail import smtp_send
from mailcred_e2e.sealing import keygen, seal_oauth_client_credentials
from mailcred_e2e.sidecar import Sidecar, file_source

# An oidc-provider opaque access token is 43 base64url characters; anything of that shape in a
# log (other than hex fingerprints and ids) is suspect.
_TOKEN_SHAPE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40,}(?![A-Za-z0-9_-])")


def token_shaped(text):
    return [t for t in _TOKEN_SHAPE.findall(text) if not re.fullmatch(r"[0-9a-f]+", t)]


def step_oauth(run, demo):
    suite, peers, user = run.suite, run.peers, run.user
    suite.say("7. OAuth 2.0: the same mailbox through a sealed client-credentials grant "
              "(oidc-provider); the sidecar logs in upstream with XOAUTH2:")
    secret = peers["PEERS_OAUTH_CLIENT_SECRET"]
    run.secrets.append(secret)
    cred = run.workdir / "mailcredential-oauth.yaml"
    key = run.workdir / "oauth-local.key"
    suite.record(keygen(key))
    suite.record(seal_oauth_client_credentials(cred, peers, kms=f"local:{key}", namespace="e2e"))
    text = cred.read_text()
    suite.check("OAuth: sealed YAML holds no client secret", secret not in text)
    suite.check("OAuth: spec.oauth names the grant and the token endpoint",
                "clientCredentials" in text and peers["PEERS_OAUTH_TOKEN_ENDPOINT"] in text)
    if demo:
        print("\n".join("   | " + l for l in text.splitlines() if l.strip().startswith(
            ("grant:", "clientId:", "tokenEndpoint:", "mechanism:"))))
    client_id = peers["PEERS_OAUTH_CLIENT_ID"]
    before = len(oauth.token_requests(peers, client_id=client_id, outcome="ok"))
    sc = Sidecar(run.workdir / "sidecar-oauth.log", file_source(cred, key), pod="e2e-oauth-0",
                 extra=["--upstream-timeout", "10"])
    try:
        suite.check("OAuth: sidecar becomes ready", sc.ready(), sc.text()[-2000:])
        subject = f"e2e-oauth-{uuid.uuid4().hex[:8]}"
        code, text, _ = smtp_send(sc.smtp, user, [user], subject)
        suite.record(text)
        suite.check("OAuth: SMTP 250 only after postfix accepted the XOAUTH2 session", code == 250,
                    f"{code} {text}")
        suite.check("OAuth: delivered (the maildir, read directly from dovecot)", run.delivered(subject))
        if demo:
            print(f"   MAIL -> {code}; landed in {user}'s INBOX")
        m = imaplib.IMAP4("127.0.0.1", sc.imap, timeout=30)
        typ, _ = m.login("app", "anything")
        suite.check("OAuth: IMAP LOGIN accepted locally", typ == "OK")
        typ, data = m.select("INBOX", readonly=True)
        typ, data = m.search(None, "SUBJECT", f'"{subject}"')
        suite.check("OAuth: IMAP SEARCH through XOAUTH2 upstream finds the message",
                    typ == "OK" and bool(data[0].split()), repr(data))
        m.logout()
        after = len(oauth.token_requests(peers, client_id=client_id, outcome="ok"))
        suite.check("OAuth: one token request served SMTP and IMAP (the token is cached)",
                    after - before == 1, f"{after - before} requests")
        plog = Path(peers["PEERS_POSTFIX_LOG"]).read_text(errors="replace")
        suite.check("OAuth: postfix saw sasl_method=XOAUTH2 for the user",
                    re.search(rf"sasl_method=XOAUTH2, sasl_username={re.escape(user)}", plog) is not None)
        audit = sc.audit()
        relayed = [a for a in audit if a.get("protocol") == "smtp" and a.get("outcome") == "relayed"]
        suite.check("OAuth: audit line for the relayed message", len(relayed) == 1, repr(audit[-3:]))
        environ = Path(f"/proc/{sc.pid}/environ").read_bytes().decode(errors="replace")
        cmdline = Path(f"/proc/{sc.pid}/cmdline").read_bytes().decode(errors="replace")
        suite.check("OAuth: client secret not in the sidecar's environ or cmdline",
                    secret not in environ and secret not in cmdline)
    finally:
        rc = sc.stop(timeout=40)
    suite.check("OAuth: SIGTERM: sidecar exits cleanly", rc == 0, f"exit {rc}")
    shaped = token_shaped(sc.text())
    suite.check("OAuth: no bearer-token-shaped string in the sidecar's log or audit", not shaped,
                repr(shaped[:3]))
