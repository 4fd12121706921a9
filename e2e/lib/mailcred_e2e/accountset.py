"""The application's side of account-set mode (issue 13), shared by e2e/local/accounts.py and
bench/accounts/: the sidecar started with --account-set against the fake API server's store
mode, the registration API driven with the real curl binary, SMTP AUTH / IMAP LOGIN as an
account with the app token, and sealed MailCredentials put straight into the store.

Secrets stay out of argv: curl reads the request body from stdin (--data-binary @-) and the
Authorization header from a 0600 file (-H @FILE)."""
import base64
import imaplib
import json
import os
import smtplib
import socket
import subprocess
import time

from . import PLUGIN
from .apiserver import kubeconfig
from .mail import _final_reply, message
from .sealing import imap_endpoint, seal, smtp_endpoint
from .sidecar import Sidecar

SET_LABEL = "mailcred.io/account-set"
REGISTERED_BY_LABEL = "mailcred.io/registered-by"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_secret_file(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def bulk_users(peers):
    """[(user, password)] of the peers' bulk users (e2e/peers/bulk_users.py)."""
    rows = open(peers["PEERS_BULK_USERS_FILE"]).read().splitlines()
    return [tuple(r.split("\t", 1)) for r in rows if "\t" in r]


def secret_forms(password):
    """The password and the encodings that are as good as it (for leak scans)."""
    return [password, base64.b64encode(password.encode()).decode()]


def vap_admit(set_name, service_account):
    """The chart's ValidatingAdmissionPolicy as the store's admission hook: the sidecar's
    ServiceAccount creates only MailCredentials of its set that list only itself."""
    def admit(verb, obj):
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        labels = meta.get("labels") or {}
        if labels.get(SET_LABEL) != set_name:
            return 422, "Invalid", f"ValidatingAdmissionPolicy: label {SET_LABEL} must be {set_name}"
        if (spec.get("access") or {}).get("serviceAccounts") != [service_account]:
            return 422, "Invalid", f"ValidatingAdmissionPolicy: access.serviceAccounts must be [{service_account}]"
        return None
    return admit


def account_sidecar(workdir, api, ca_pem, *, set_name, service_account, token, seal_kms_key=None,
                    local_key=None, env, log_name="sidecar.log", cache_ttl=None, cache_size=None,
                    extra=(), namespace="e2e", binary=None, registration=True):
    """A sidecar in account-set mode against `api` (a StoreApiServer) through a kubeconfig.
    The registration port is chosen here; the others are read from the serving line."""
    kc = kubeconfig(workdir / f"{log_name}.kubeconfig", api.port, ca_pem, api.token, namespace)
    token_file = write_secret_file(workdir / f"{log_name}.app-token", token + "\n")
    reg_port = free_port()
    args = ["--account-set", set_name, "--namespace", namespace, "--service-account", service_account,
            "--app-token-file", str(token_file)]
    if registration:
        args += ["--registration-listen", f"127.0.0.1:{reg_port}"]
    if seal_kms_key and registration:
        args += ["--seal-kms-key", seal_kms_key]
    if local_key:
        args += ["--local-key-file", str(local_key)]
    if cache_size is not None:
        args += ["--account-cache-size", str(cache_size)]
    log = workdir / log_name
    log.unlink(missing_ok=True)  # the launcher appends; a stale serving line would name old ports
    sc = Sidecar(log, args, pod="e2e-accounts-0", env=dict(env, KUBECONFIG=str(kc)), cache_ttl=cache_ttl,
                 extra=list(extra), **({"binary": binary} if binary else {}))
    sc.registration = reg_port
    sc.token = token
    return sc


class Registration:
    """The registration API through curl: (HTTP status, parsed JSON or raw text)."""

    def __init__(self, port, token, workdir):
        self.url = f"http://127.0.0.1:{port}"
        self.header = write_secret_file(workdir / "registration-auth.header", f"Authorization: Bearer {token}\n")
        self.workdir = workdir

    def __call__(self, method, path, body=None, *, raw=None, ctype="application/json", header=None, timeout=60):
        args = ["curl", "-sS", "--max-time", str(timeout), "-X", method, "-H", f"@{header or self.header}",
                "-w", "\n%{http_code}"]
        data = None
        if body is not None or raw is not None:
            data = raw if raw is not None else json.dumps(body).encode()
            args += ["-H", f"Content-Type: {ctype}", "--data-binary", "@-"]
        r = subprocess.run(args + [self.url + path], input=data, capture_output=True, timeout=timeout + 5)
        text, _, code = r.stdout.decode(errors="replace").rpartition("\n")
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = text
        return int(code or 0), parsed


def endpoint_body(endpoint, ca_pem):
    host, port, tls = endpoint
    return {"host": host, "port": int(port), "tls": tls, "caPem": open(ca_pem).read()}


def account_body(peers, username, password, name=None, smtp=True, imap=True, **more):
    body = {"username": username, "password": password}
    if name:
        body["name"] = name
    if smtp:
        body["smtp"] = endpoint_body(smtp_endpoint(peers), peers["PEERS_CA_PEM"])
    if imap:
        body["imap"] = endpoint_body(imap_endpoint(peers), peers["PEERS_CA_PEM"])
    body.update(more)
    return body


def sealed_outline(workdir, peers, *, name, user, password, kms, set_name, service_account,
                   expires_at=None, namespace="e2e", env=None, plugin=PLUGIN):
    """A MailCredential sealed with kubectl-mailcred (password via stdin) carrying the set's
    labels, as a dict for the store; `expires_at` an RFC 3339 string."""
    import yaml  # the venv has it (moto's dependency)

    out = workdir / f"outline-{name}.yaml"
    seal(out, user=user, password=password, kms=kms, ca_file=peers["PEERS_CA_PEM"], smtp=smtp_endpoint(peers),
         imap=imap_endpoint(peers), namespace=namespace, name=name, service_account=service_account,
         env=env, plugin=plugin)
    obj = yaml.safe_load(out.read_text())
    obj["metadata"]["labels"] = {SET_LABEL: set_name, REGISTERED_BY_LABEL: service_account}
    if expires_at:
        obj["spec"]["expiresAt"] = expires_at
    return obj


def smtp_as(port, account, token, sender, to, subject, mech="PLAIN", timeout=60, body=None):
    """One message as `account` (AUTH PLAIN or LOGIN with the app token): (code, text)."""
    def send():
        with smtplib.SMTP("127.0.0.1", port, timeout=timeout, local_hostname="app.e2e.test") as s:
            s.ehlo()
            s.user, s.password = account, token
            s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login, initial_response_ok=mech == "PLAIN")
            msg = message(sender, to, subject) if body is None else message(sender, to, subject, body=body)
            s.send_message(msg, from_addr=sender, to_addrs=to)
    return _final_reply(send)


def smtp_auth_reply(port, account, token, mech="PLAIN", timeout=30):
    """(code, text) of the AUTH alone: 235 when accepted."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=timeout, local_hostname="app.e2e.test") as s:
            s.ehlo()
            s.user, s.password = account, token
            code, text = s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login,
                                initial_response_ok=mech == "PLAIN")
            return code, text.decode(errors="replace")
    except smtplib.SMTPAuthenticationError as e:
        return e.smtp_code, e.smtp_error.decode(errors="replace")
    except (smtplib.SMTPException, OSError) as e:
        return -1, f"{type(e).__name__}: {e}"


def imap_as(port, account, token, authenticate=False, timeout=60):
    """(ok, detail, connection or None): LOGIN, or AUTHENTICATE PLAIN."""
    m = imaplib.IMAP4("127.0.0.1", port, timeout=timeout)
    try:
        if authenticate:
            typ, data = m.authenticate("PLAIN", lambda _: f"\0{account}\0{token}".encode())
        else:
            typ, data = m.login(account, token)
        ok, detail = typ == "OK", repr(data)
    except (imaplib.IMAP4.error, OSError) as e:
        ok, detail = False, str(e)
    if not ok:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
        return False, detail, None
    return True, detail, m


def search(conn, subject):
    """Message numbers in INBOX whose Subject has `subject`."""
    conn.select("INBOX", readonly=True)
    typ, data = conn.search(None, "SUBJECT", f'"{subject}"')
    return data[0].split() if typ == "OK" and data and data[0] else []


def session_ended(conn, timeout=5.0):
    """True when the open IMAP session is ended by the server (BYE / closed) within timeout:
    a NOOP every 0.2 s fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            typ, _ = conn.noop()
            if typ != "OK":
                return True
        except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError):
            return True
        time.sleep(0.2)
    return False
