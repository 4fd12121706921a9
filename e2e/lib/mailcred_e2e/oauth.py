"""Clients of the OAuth test peers (e2e/peers/oauth): tokens from oidc-provider for every grant
the peers serve, a scripted "user" for the device flow and the authorization-code flow, the
Google-style JWT-bearer endpoint, and XOAUTH2 / OAUTHBEARER logins straight to dovecot and
postfix. `peers` is the dict of DIR/env (peers.read_env).

Also a command line, for tests in other languages (prints JSON on stdout; run it as
`PYTHONPATH=e2e/lib .venv/bin/python -m mailcred_e2e.oauth ...` from the repository root):
  python -m mailcred_e2e.oauth [--env DIR/env] client-credentials [--client secret|jwt|short] [--mailbox ADDR]
  python -m mailcred_e2e.oauth [--env DIR/env] device-token USER [--client native|secret|rotate|jwt|short]
  python -m mailcred_e2e.oauth [--env DIR/env] approve-device USER_CODE USER
  python -m mailcred_e2e.oauth [--env DIR/env] deny-device USER_CODE
  python -m mailcred_e2e.oauth [--env DIR/env] authorize AUTHORIZATION_URL USER
  python -m mailcred_e2e.oauth [--env DIR/env] google-token SUB
(--env defaults to $MAILCRED_PEERS_ENV). These print tokens: test data of a throw-away server.
"""
import base64
import hashlib
import html
import http.cookiejar
import json
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request

from . import peers as peerlib

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENTS = {  # short name -> env key of the client id
    "secret": "PEERS_OAUTH_CLIENT_ID",
    "rotate": "PEERS_OAUTH_ROTATE_CLIENT_ID",
    "jwt": "PEERS_OAUTH_JWT_CLIENT_ID",
    "native": "PEERS_OAUTH_NATIVE_CLIENT_ID",
    "short": "PEERS_OAUTH_SHORT_CLIENT_ID",
}


class OAuthError(Exception):
    """An error answer of a token endpoint: .status, .error (the OAuth code), .body."""

    def __init__(self, status, body):
        self.status, self.body = status, body
        self.error = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status}: {self.error}: {body.get('error_description') if isinstance(body, dict) else body}")


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_rs256(claims, key_pem, kid=None):
    """A compact JWS (RS256) of claims with the PEM private key (cryptography, in the venv)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_private_key(key_pem.encode() if isinstance(key_pem, str) else key_pem, None)
    header = {"alg": "RS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def post_form(peers, url, fields, timeout=10):
    """POSTs a form over TLS verified against the test CA; returns the JSON answer or raises
    OAuthError with the server's error."""
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, context=peerlib.tls_context(peers), timeout=timeout) as resp:
            text = resp.read()
            return json.loads(text) if text else {}
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            body = json.loads(text)
        except ValueError:
            body = {"error": None, "error_description": text[:200].decode(errors="replace")}
        raise OAuthError(err.code, body) from None


def client_auth(peers, client="secret"):
    """The token-endpoint authentication fields of a peers client: client_secret_post, a fresh
    private_key_jwt assertion, or just the client id for the public client."""
    client_id = peers[CLIENTS[client]]
    if client in ("secret", "rotate", "short"):
        return {"client_id": client_id, "client_secret": peers["PEERS_OAUTH_CLIENT_SECRET"]}
    if client == "jwt":
        now = int(time.time())
        claims = {"iss": client_id, "sub": client_id, "aud": peers["PEERS_OAUTH_TOKEN_ENDPOINT"],
                  "jti": secrets.token_hex(16), "iat": now, "exp": now + 60}
        with open(peers["PEERS_OAUTH_JWT_KEY_PEM"]) as f:
            assertion = sign_rs256(claims, f.read(), peers["PEERS_OAUTH_JWT_KEY_ID"])
        return {"client_id": client_id, "client_assertion_type": CLIENT_ASSERTION, "client_assertion": assertion}
    return {"client_id": client_id}


def token_request(peers, fields, client="secret"):
    return post_form(peers, peers["PEERS_OAUTH_TOKEN_ENDPOINT"], {**fields, **client_auth(peers, client)})


def client_credentials(peers, client="secret", mailbox=None, scope=None):
    """A client-credentials token response. The token opens `mailbox` (scope mailbox:ADDR),
    or PEERS_USER when none is named; scope defaults to PEERS_OAUTH_SCOPE (`mail`)."""
    scope = scope if scope is not None else peers["PEERS_OAUTH_SCOPE"]
    if mailbox:
        scope = f"{scope} mailbox:{mailbox}"
    return token_request(peers, {"grant_type": "client_credentials", "scope": scope}, client)


def refresh(peers, refresh_token, client="native"):
    return token_request(peers, {"grant_type": "refresh_token", "refresh_token": refresh_token}, client)


def revoke(peers, token, client="secret", hint=None):
    """RFC 7009 revocation by the client the token was issued to."""
    fields = {"token": token, **({"token_type_hint": hint} if hint else {}), **client_auth(peers, client)}
    return post_form(peers, peers["PEERS_OAUTH_REVOCATION_ENDPOINT"], fields)


# ---- the scripted user: a cookie-keeping browser that fills in the sign-in page ------------
class _Browser:
    def __init__(self, peers):
        self.peers = peers
        no_redirect = type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                           {"redirect_request": lambda *a, **k: None})
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            urllib.request.HTTPSHandler(context=peerlib.tls_context(peers)), no_redirect)

    def go(self, url, form=None, max_hops=10):
        """GET (or POST form) and follow redirects within the issuer; returns (url, status,
        html). A redirect elsewhere (the app's loopback redirect_uri) is returned, not followed."""
        issuer = self.peers["PEERS_OAUTH_ISSUER"]
        for _ in range(max_hops):
            data = urllib.parse.urlencode(form).encode() if form is not None else None
            try:
                with self.opener.open(url, data, timeout=10) as resp:
                    return url, resp.status, resp.read().decode()
            except urllib.error.HTTPError as err:
                if err.code not in (301, 302, 303, 307):
                    return url, err.code, err.read().decode(errors="replace")
                url = urllib.parse.urljoin(url, err.headers["Location"])
                form = None
                if not url.startswith(issuer + "/"):
                    return url, err.code, ""
        raise RuntimeError(f"more than {max_hops} redirects")


def _form(page, form_id=None):
    """(action, {hidden fields}) of the page's first form, or of the form with that id."""
    for m in re.finditer(r"<form\b([^>]*)>(.*?)</form>", page, re.S):
        attrs, body = m.groups()
        if form_id and f'id="{form_id}"' not in attrs:
            continue
        action = html.unescape(re.search(r'action="([^"]*)"', attrs).group(1))
        fields = {html.unescape(n): html.unescape(v) for n, v in
                  re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', body)}
        return action, fields
    raise RuntimeError(f"no form {form_id or ''} in the page: {page[:200]!r}")


def _sign_in(browser, url, page, user, password):
    """Fills in the peers' sign-in page (login + consent in one POST); returns go()'s result."""
    action, _ = _form(page, "login")
    return browser.go(urllib.parse.urljoin(url, action), {"login": user, "password": password})


def approve_device(peers, user_code, user, password=None):
    """What the user does on the verification page: enter the code, confirm, sign in."""
    password = password or peers["PEERS_OAUTH_LOGIN_PASSWORD"]
    b = _Browser(peers)
    issuer = peers["PEERS_OAUTH_ISSUER"]
    url, _, page = b.go(f"{issuer}/device?{urllib.parse.urlencode({'user_code': user_code})}")
    action, fields = _form(page)  # the auto-submitted form with the xsrf token
    url, _, page = b.go(urllib.parse.urljoin(url, action), fields)
    action, fields = _form(page, "op.deviceConfirmForm")
    url, _, page = b.go(urllib.parse.urljoin(url, action), fields)
    url, status, page = _sign_in(b, url, page, user, password)
    if status != 200 or "Sign-in Success" not in page:
        raise RuntimeError(f"device approval ended at {url} with HTTP {status}: {page[:200]!r}")


def deny_device(peers, user_code):
    """The user enters the code, confirms, then presses Deny on the sign-in page: the device
    flow's token request gets access_denied."""
    b = _Browser(peers)
    issuer = peers["PEERS_OAUTH_ISSUER"]
    url, _, page = b.go(f"{issuer}/device?{urllib.parse.urlencode({'user_code': user_code})}")
    action, fields = _form(page)
    url, _, page = b.go(urllib.parse.urljoin(url, action), fields)
    action, fields = _form(page, "op.deviceConfirmForm")
    url, _, page = b.go(urllib.parse.urljoin(url, action), fields)
    action, _ = _form(page, "abort")
    url, status, page = b.go(urllib.parse.urljoin(url, action), {})
    if status != 200:
        raise RuntimeError(f"device denial ended at {url} with HTTP {status}: {page[:200]!r}")


def device_authorization(peers, client="native", scope="mail offline_access"):
    return post_form(peers, peers["PEERS_OAUTH_DEVICE_ENDPOINT"], {"scope": scope, **client_auth(peers, client)})


def device_token(peers, user, client="native", scope="mail offline_access", timeout_s=30):
    """The whole device flow for USER: a token response with access_token and refresh_token."""
    started = device_authorization(peers, client, scope)
    approve_device(peers, started["user_code"], user)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return token_request(peers, {"grant_type": DEVICE_GRANT, "device_code": started["device_code"]}, client)
        except OAuthError as err:
            if err.error not in ("authorization_pending", "slow_down") or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def authorize(peers, authorization_url, user, password=None):
    """What the user does after the app opens authorization_url: sign in and consent. Returns
    the redirect to the app's redirect_uri (with code and state) without opening it; a test
    whose app listens on the loopback redirect opens it with urllib.request.urlopen."""
    b = _Browser(peers)
    url, status, page = b.go(authorization_url)
    url, status, page = _sign_in(b, url, page, user, password or peers["PEERS_OAUTH_LOGIN_PASSWORD"])
    if url.startswith(peers["PEERS_OAUTH_ISSUER"] + "/"):
        raise RuntimeError(f"authorization ended at {url} with HTTP {status}: {page[:200]!r}")
    return url


def pkce_pair():
    verifier = secrets.token_urlsafe(48)
    return verifier, _b64url(hashlib.sha256(verifier.encode()).digest())


def code_token(peers, user, redirect_uri="http://127.0.0.1:9/callback", scope="mail offline_access"):
    """Authorization code + PKCE for the native client, the code taken from the redirect."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    query = {"client_id": peers["PEERS_OAUTH_NATIVE_CLIENT_ID"], "response_type": "code", "scope": scope,
             "redirect_uri": redirect_uri, "code_challenge": challenge, "code_challenge_method": "S256",
             "state": state,
             # oidc-provider (as OpenID Connect says) keeps offline_access, so issues a refresh
             # token, only with prompt=consent; Google wants the same (plus access_type=offline).
             "prompt": "consent"}
    back = authorize(peers, f"{peers['PEERS_OAUTH_AUTHORIZATION_ENDPOINT']}?{urllib.parse.urlencode(query)}", user)
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))
    if params.get("state") != state or "code" not in params:
        raise RuntimeError(f"unexpected redirect {back}")
    return token_request(peers, {"grant_type": "authorization_code", "code": params["code"],
                                 "redirect_uri": redirect_uri, "code_verifier": verifier}, "native")


# ---- Google-style service account (JWT-bearer grant) ----------------------------------------
def service_account(peers):
    with open(peers["PEERS_GOOGLE_SA_KEY_FILE"]) as f:
        return json.load(f)


def google_assertion(peers, sub, scope=None, aud=None, iat=None, lifetime=3600, key_pem=None, kid=True):
    """The JWT a Google client library signs for domain-wide delegation; every part can be
    bent for the refusal tests."""
    sa = service_account(peers)
    iat = int(time.time()) if iat is None else iat
    claims = {"iss": sa["client_email"], "scope": scope or peers["PEERS_GOOGLE_SCOPE"],
              "aud": aud or sa["token_uri"], "iat": iat, "exp": iat + lifetime}
    if sub:
        claims["sub"] = sub
    return sign_rs256(claims, key_pem or sa["private_key"], sa["private_key_id"] if kid else None)


def google_token(peers, assertion):
    return post_form(peers, service_account(peers)["token_uri"], {"grant_type": JWT_BEARER, "assertion": assertion})


# ---- straight to the mail servers -----------------------------------------------------------
def xoauth2(user, token):
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def oauthbearer(user, token, host, port):
    """RFC 7628 initial client response."""
    return f"n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"


def imap_login(peers, user, token, mech="XOAUTH2", mode="tls"):
    """AUTHENTICATE with a bearer token straight to dovecot; returns the open connection or
    raises imaplib.IMAP4.error with dovecot's answer."""
    conn = peerlib.direct_imap(peers, mode=mode, timeout=10)
    port = int(peers["PEERS_IMAP_TLS_PORT" if mode == "tls" else "PEERS_IMAP_STARTTLS_PORT"])
    text = xoauth2(user, token) if mech == "XOAUTH2" else oauthbearer(user, token, peers["PEERS_HOST"], port)
    try:
        # The first (empty) challenge gets the token; a refusal comes as a second challenge
        # holding the JSON error, which the client answers with an empty response.
        conn.authenticate(mech, lambda challenge: b"" if challenge else text.encode())
    except Exception:
        conn.shutdown()
        raise
    return conn


def smtp_login(peers, user, token, mech="XOAUTH2"):
    """SMTP STARTTLS + AUTH with a bearer token straight to postfix (dovecot SASL); returns the
    open smtplib.SMTP or raises smtplib.SMTPAuthenticationError."""
    import smtplib

    port = int(peers["PEERS_SMTP_STARTTLS_PORT"])
    conn = smtplib.SMTP(peers["PEERS_HOST"], port, local_hostname="oauth.example.test", timeout=10)
    try:
        conn.starttls(context=peerlib.tls_context(peers))
        conn.ehlo()
        text = xoauth2(user, token) if mech == "XOAUTH2" else oauthbearer(user, token, peers["PEERS_HOST"], port)
        # A refused token gets a 334 with the server's JSON error; the client answers empty.
        conn.auth(mech, lambda challenge=None: text if challenge is None else "", initial_response_ok=True)
    except Exception:
        conn.close()
        raise
    return conn


def token_requests(peers, **match):
    """Lines of the token-request log whose key=value fields match, e.g.
    token_requests(peers, client_id="mailcred-secret", outcome="ok")."""
    with open(peers["PEERS_OAUTH_TOKEN_LOG"]) as f:
        lines = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in f if line.strip()]
    return [line for line in lines if all(line.get(k) == v for k, v in match.items())]


def main(argv=None):
    import argparse
    import os

    ap = argparse.ArgumentParser(prog="python -m mailcred_e2e.oauth")
    ap.add_argument("--env", default=os.environ.get("MAILCRED_PEERS_ENV"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    cc = sub.add_parser("client-credentials")
    cc.add_argument("--client", default="secret")
    cc.add_argument("--mailbox")
    dt = sub.add_parser("device-token")
    dt.add_argument("user")
    dt.add_argument("--client", default="native")
    ad = sub.add_parser("approve-device")
    ad.add_argument("user_code")
    ad.add_argument("user")
    dd = sub.add_parser("deny-device")
    dd.add_argument("user_code")
    az = sub.add_parser("authorize")
    az.add_argument("url")
    az.add_argument("user")
    gt = sub.add_parser("google-token")
    gt.add_argument("sub")
    args = ap.parse_args(argv)
    if not args.env:
        ap.error("--env or MAILCRED_PEERS_ENV is needed")
    peers = peerlib.read_env(args.env)
    if args.cmd == "client-credentials":
        out = client_credentials(peers, args.client, args.mailbox)
    elif args.cmd == "device-token":
        out = device_token(peers, args.user, args.client)
    elif args.cmd == "approve-device":
        out = approve_device(peers, args.user_code, args.user) or {"approved": args.user_code}
    elif args.cmd == "deny-device":
        out = deny_device(peers, args.user_code) or {"denied": args.user_code}
    elif args.cmd == "authorize":
        out = {"redirect": authorize(peers, args.url, args.user)}
    else:
        out = google_token(peers, google_assertion(peers, args.sub))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
