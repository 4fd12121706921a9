"""The OAuth checks of selftest.sh, in one process (a python start per check would cost more
than the checks): tokens from the real oidc-provider and the Google-style JWT-bearer endpoint,
XOAUTH2 / OAUTHBEARER logins to dovecot IMAP and postfix submission, and the refusals, each
proven refused by dovecot itself (its auth log line), not by the client.

Prints one line per check, "PASS<TAB>name (detail)" or "FAIL<TAB>name<TAB>detail", for
selftest.sh to count. Usage: selftest_oauth.py DIR/env
"""
import imaplib
import os
import secrets
import smtplib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from mailcred_e2e import oauth, peers as peerlib  # noqa: E402

P = peerlib.read_env(sys.argv[1])
USER, USER2 = P["PEERS_USER"], P["PEERS_USER2"]
seen_tokens = []  # every token and secret handed out: none may appear in a log
results = []


def check(name):
    def wrap(fn):
        t0 = time.monotonic()
        try:
            detail = fn()
            print(f"PASS\t{name} ({detail}; {int((time.monotonic() - t0) * 1000)} ms)", flush=True)
            results.append(True)
        except Exception as err:  # a check's surprise is its failure, with the reason
            print(f"FAIL\t{name}\t{type(err).__name__}: {err}", flush=True)
            results.append(False)
        return fn
    return wrap


def keep(resp):
    for k in ("access_token", "refresh_token"):
        if resp.get(k):
            seen_tokens.append(resp[k])
    return resp


def dovecot_log_mark():
    return os.path.getsize(P["PEERS_DOVECOT_LOG"])


def dovecot_said(mark, text, timeout_s=2.0):
    """dovecot's auth process wrote `text` after mark (the refusal was dovecot's own)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with open(P["PEERS_DOVECOT_LOG"], errors="replace") as f:
            f.seek(mark)
            new = f.read()
        if text in new:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"dovecot log has no {text!r} after the attempt: {new[-300:]!r}")
        time.sleep(0.05)


def imap_ok(user, token, mech="XOAUTH2", mode="tls"):
    conn = oauth.imap_login(P, user, token, mech, mode)
    try:
        typ, _ = conn.select("INBOX", readonly=True)
        assert typ == "OK", typ
    finally:
        conn.logout()
    return f"IMAP {mode} {mech} as {user}"


def imap_refused(user, token, reason, mech="XOAUTH2"):
    """dovecot refuses the token with AUTHENTICATIONFAILED and logs `reason`."""
    mark = dovecot_log_mark()
    try:
        oauth.imap_login(P, user, token, mech).logout()
    except imaplib.IMAP4.error as err:
        if "AUTHENTICATIONFAILED" not in str(err):
            raise AssertionError(f"refused, but not as an authentication failure: {err}") from None
        return f"IMAP {mech}: {err}; dovecot: {dovecot_said(mark, reason)}"
    raise AssertionError("dovecot accepted the token")


def smtp_refused(user, token, reason, mech="XOAUTH2"):
    mark = dovecot_log_mark()
    try:
        oauth.smtp_login(P, user, token, mech).quit()
    except smtplib.SMTPAuthenticationError as err:
        if err.smtp_code != 535:
            raise AssertionError(f"SMTP {err.smtp_code}, expected 535") from None
        return f"SMTP {mech}: {err.smtp_code}; dovecot: {dovecot_said(mark, reason)}"
    raise AssertionError("postfix accepted the token")


def requests_now():
    return len(oauth.token_requests(P))


start_requests = requests_now()
expected_requests = 0  # token-endpoint requests this script makes, to compare with the log


def counted(n=1):
    global expected_requests
    expected_requests += n


# The short-TTL token is fetched first and checked last: its expiry overlaps the other checks.
short = keep(oauth.client_credentials(P, "short"))
counted()
short_at = time.monotonic()


@check("IMAP and SMTP offer XOAUTH2 and OAUTHBEARER (dovecot oauth2 passdb; postfix via dovecot SASL)")
def _():
    conn = peerlib.direct_imap(P, mode="tls", timeout=10)
    caps = set(conn.capabilities)
    conn.logout()
    with smtplib.SMTP(P["PEERS_HOST"], int(P["PEERS_SMTP_STARTTLS_PORT"]), local_hostname="selftest.example.test", timeout=10) as s:
        s.starttls(context=peerlib.tls_context(P))
        s.ehlo()
        smtp_auth = s.esmtp_features.get("auth", "").split()
    need = {"AUTH=XOAUTH2", "AUTH=OAUTHBEARER", "AUTH=PLAIN"}
    assert need <= caps, caps
    assert {"XOAUTH2", "OAUTHBEARER", "PLAIN", "LOGIN"} <= set(smtp_auth), smtp_auth
    return f"IMAP {' '.join(sorted(c for c in caps if c.startswith('AUTH=')))}; SMTP AUTH {' '.join(smtp_auth)}"


@check("the short-TTL token logs in before it expires")
def _():
    assert short["expires_in"] == int(P["PEERS_OAUTH_SHORT_TTL"]), short
    return imap_ok(USER, short["access_token"])


subject = f"oauth-selftest-{secrets.token_hex(6)}"


@check("client credentials (client_secret_post) -> IMAP XOAUTH2 and OAUTHBEARER, SMTP XOAUTH2 submits a message")
def _():
    tok = keep(oauth.client_credentials(P, "secret"))["access_token"]
    counted()
    imap_ok(USER, tok, "XOAUTH2", "tls")
    imap_ok(USER, tok, "OAUTHBEARER", "starttls")
    conn = oauth.smtp_login(P, USER, tok, "XOAUTH2")
    try:
        refused = conn.sendmail(USER, [USER], f"Subject: {subject}\r\n\r\nsent with XOAUTH2\r\n")
    finally:
        conn.quit()
    assert not refused, refused
    return f"token of {P['PEERS_OAUTH_CLIENT_ID']} for {USER}; message queued"


@check("client credentials (private_key_jwt, mailbox scope) -> SMTP OAUTHBEARER, IMAP OAUTHBEARER reads the message")
def _():
    resp = keep(oauth.client_credentials(P, "jwt", mailbox=USER))
    counted()
    assert f"mailbox:{USER}" in resp["scope"].split(), resp["scope"]
    oauth.smtp_login(P, USER, resp["access_token"], "OAUTHBEARER").quit()
    deadline = time.monotonic() + 10
    while True:
        conn = oauth.imap_login(P, USER, resp["access_token"], "OAUTHBEARER")
        try:
            conn.select("INBOX", readonly=True)
            typ, data = conn.search(None, "SUBJECT", f'"{subject}"')
        finally:
            conn.logout()
        if typ == "OK" and data[0].split():
            return f"{P['PEERS_OAUTH_JWT_CLIENT_ID']} (kid {P['PEERS_OAUTH_JWT_KEY_ID']}); delivered message found"
        if time.monotonic() > deadline:
            raise AssertionError("the XOAUTH2-submitted message did not arrive within 10 s")
        time.sleep(0.1)


@check("a token for another mailbox is refused by dovecot (username claim != SASL user)")
def _():
    tok = keep(oauth.client_credentials(P, "secret", mailbox=USER2))["access_token"]
    counted()
    imap_ok(USER2, tok)
    return imap_refused(USER, tok, f"Username '{USER}' did not match '{USER2}'")


@check("a wrong token is refused by dovecot (introspection: not active), IMAP and SMTP")
def _():
    bogus = secrets.token_urlsafe(32)
    return (imap_refused(USER, bogus, "Provided token is not valid") + "; "
            + smtp_refused(USER, bogus, "Provided token is not valid", "OAUTHBEARER"))


@check("a token without the mail scope is refused by dovecot")
def _():
    tok = keep(oauth.client_credentials(P, "secret", scope=f"mailbox:{USER}"))["access_token"]
    counted()
    return imap_refused(USER, tok, "Token is not valid for scope 'mail'")


@check("a revoked token (RFC 7009) is refused by dovecot, IMAP and SMTP")
def _():
    tok = keep(oauth.client_credentials(P, "secret"))["access_token"]
    counted()
    imap_ok(USER, tok)
    oauth.revoke(P, tok, "secret")
    return imap_refused(USER, tok, "Provided token is not valid") + "; " + smtp_refused(USER, tok, "Provided token is not valid")


@check("an unknown mailbox scope is refused by the token endpoint (invalid_scope)")
def _():
    counted()
    try:
        oauth.client_credentials(P, "secret", mailbox="nobody@example.test")
    except oauth.OAuthError as err:
        assert err.error == "invalid_scope", err
        return str(err)
    raise AssertionError("token issued")


@check("device flow (public client, scripted sign-in) -> refresh token; refresh rotates; reusing the old one revokes the grant")
def _():
    counted()  # one poll: the scripted approval comes before it
    first = keep(oauth.device_token(P, USER2, "native"))
    assert first.get("refresh_token"), sorted(first)
    imap_ok(USER2, first["access_token"])
    counted()
    second = keep(oauth.refresh(P, first["refresh_token"], "native"))
    assert second["refresh_token"] != first["refresh_token"], "not rotated"
    imap_ok(USER2, second["access_token"])
    for label, rt in (("the rotated-out", first), ("the newest", second)):
        counted()
        try:
            oauth.refresh(P, rt["refresh_token"], "native")
            raise AssertionError(f"{label} refresh token was accepted after the reuse")
        except oauth.OAuthError as err:
            assert err.error == "invalid_grant", err
    refused = imap_refused(USER2, second["access_token"], "Provided token is not valid")
    return f"old refresh token -> invalid_grant, newest refresh token -> invalid_grant, its access token: {refused}"


@check("refresh without rotation (client_secret_post): the same refresh token works twice")
def _():
    first = keep(oauth.device_token(P, USER, "secret"))
    a = keep(oauth.refresh(P, first["refresh_token"], "secret"))
    b = keep(oauth.refresh(P, first["refresh_token"], "secret"))
    counted(3)
    assert a.get("refresh_token", first["refresh_token"]) == first["refresh_token"], "rotated"
    imap_ok(USER, b["access_token"])
    return "two refreshes with one refresh token; the access token logs in"


@check("authorization code + PKCE (native client, loopback redirect on any port) -> tokens that log in")
def _():
    resp = keep(oauth.code_token(P, USER, redirect_uri="http://127.0.0.1:18123/callback"))
    counted()
    assert resp.get("refresh_token"), sorted(resp)
    return imap_ok(USER, resp["access_token"])


@check("JWT-bearer (Google service account, sub = mailbox) -> token that dovecot accepts, IMAP and SMTP")
def _():
    resp = keep(oauth.google_token(P, oauth.google_assertion(P, USER)))
    counted()
    assert resp["token_type"] == "Bearer" and resp["scope"] == P["PEERS_GOOGLE_SCOPE"], resp
    imap_ok(USER, resp["access_token"])
    oauth.smtp_login(P, USER, resp["access_token"]).quit()
    refused = imap_refused(USER2, resp["access_token"], f"Username '{USER2}' did not match '{USER}'")
    oauth.post_form(P, P["PEERS_GOOGLE_REVOKE_ENDPOINT"], {"token": resp["access_token"]})
    revoked = imap_refused(USER, resp["access_token"], "Provided token is not valid")
    return f"expires_in {resp['expires_in']}; as another user: {refused}; after /revoke: {revoked}"


def other_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


for label, kwargs, error in [
    ("signed by another key", {"key_pem": other_key()}, "invalid_grant"),
    ("aud = Google's real token URL", {"aud": "https://oauth2.googleapis.com/token"}, "invalid_grant"),
    ("lifetime 3601 s", {"lifetime": 3601}, "invalid_grant"),
    ("iat 120 s in the future", {"iat": int(time.time()) + 120}, "invalid_grant"),
    ("a scope not delegated", {"scope": "https://www.googleapis.com/auth/drive"}, "unauthorized_client"),
]:
    @check(f"JWT-bearer refuses an assertion {label} ({error})")
    def _(kwargs=kwargs, error=error):
        counted()
        try:
            oauth.google_token(P, oauth.google_assertion(P, USER, **kwargs))
        except oauth.OAuthError as err:
            assert err.status == 400 and err.error == error, err
            return str(err)
        raise AssertionError("token issued")


@check("the short-TTL token, once expired, is refused by dovecot")
def _():
    wait = short_at + int(P["PEERS_OAUTH_SHORT_TTL"]) + 1.1 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    return imap_refused(USER, short["access_token"], "Provided token is not valid")


@check("the token-request log has one line per token request, with client id and grant type")
def _():
    lines = oauth.token_requests(P)[start_requests:]
    assert len(lines) == expected_requests, f"{len(lines)} lines for {expected_requests} requests"
    kinds = sorted({(ln["endpoint"], ln["grant_type"].rsplit(":", 1)[-1]) for ln in lines})
    ok = sum(1 for ln in lines if ln["outcome"] == "ok")
    assert all(ln.get("client_id", "-") != "-" for ln in lines), lines
    return f"{len(lines)} lines ({ok} ok) in {Path(P['PEERS_OAUTH_TOKEN_LOG']).name}: {kinds}"


@check("no token, client secret or sign-in password in the dovecot, postfix, oauth or token-request logs")
def _():
    secrets_ = seen_tokens + [P["PEERS_OAUTH_CLIENT_SECRET"], P["PEERS_OAUTH_LOGIN_PASSWORD"]]
    logs = [P[k] for k in ("PEERS_DOVECOT_LOG", "PEERS_POSTFIX_LOG", "PEERS_OAUTH_LOG", "PEERS_OAUTH_TOKEN_LOG")]
    text = "".join(Path(f).read_text(errors="replace") for f in logs)
    found = [s for s in secrets_ if s in text]
    assert not found, f"{len(found)} of {len(secrets_)} found"
    return f"{len(secrets_)} values, {len(logs)} logs"


sys.exit(0 if all(results) else 1)
