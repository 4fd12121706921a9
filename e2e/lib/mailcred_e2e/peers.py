"""The real test peers (e2e/peers): their env file, starting and stopping them, and clients
that talk to them directly (not through the sidecar). The OAuth servers' clients (tokens,
XOAUTH2/OAUTHBEARER logins) are in mailcred_e2e.oauth."""
import imaplib
import os
import ssl
import subprocess
from pathlib import Path

from . import REPO

PEERS_SCRIPTS = REPO / "e2e/peers"
AWS_KEYS = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY")
# The OAuth part of DIR/env (e2e/peers/oauth.sh; meanings in e2e/peers/README.md "OAuth").
OAUTH_KEYS = (
    "PEERS_OAUTH_ISSUER", "PEERS_OAUTH_PORT", "PEERS_OAUTH_TOKEN_ENDPOINT",
    "PEERS_OAUTH_AUTHORIZATION_ENDPOINT", "PEERS_OAUTH_DEVICE_ENDPOINT",
    "PEERS_OAUTH_INTROSPECTION_ENDPOINT", "PEERS_OAUTH_REVOCATION_ENDPOINT", "PEERS_OAUTH_SCOPE",
    "PEERS_OAUTH_CLIENT_ID", "PEERS_OAUTH_CLIENT_SECRET", "PEERS_OAUTH_ROTATE_CLIENT_ID",
    "PEERS_OAUTH_JWT_CLIENT_ID", "PEERS_OAUTH_JWT_KEY_PEM", "PEERS_OAUTH_JWT_KEY_ID",
    "PEERS_OAUTH_NATIVE_CLIENT_ID", "PEERS_OAUTH_NATIVE_REDIRECT_URI", "PEERS_OAUTH_SHORT_CLIENT_ID",
    "PEERS_OAUTH_ACCESS_TOKEN_TTL", "PEERS_OAUTH_SHORT_TTL", "PEERS_OAUTH_LOGIN_PASSWORD",
    "PEERS_OAUTH_TOKEN_LOG", "PEERS_OAUTH_LOG", "PEERS_GOOGLE_TOKEN_ENDPOINT",
    "PEERS_GOOGLE_REVOKE_ENDPOINT", "PEERS_GOOGLE_TOKEN_PORT", "PEERS_GOOGLE_SA_KEY_FILE",
    "PEERS_GOOGLE_SA_EMAIL", "PEERS_GOOGLE_SCOPE", "PEERS_DOVECOT_OAUTH2_CONFIG",
)


def read_env(path):
    """DIR/env as a dict. Its values never hold spaces or quotes; comments are skipped and
    quotes stripped anyway, so a hand-written env file reads the same."""
    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip().strip('"').strip("'")
    return env


def from_environment():
    """The peers named by MAILCRED_PEERS_ENV (what scripts/test.sh exports)."""
    env_file = os.environ.get("MAILCRED_PEERS_ENV")
    if not env_file:
        raise SystemExit("MAILCRED_PEERS_ENV is not set: start the peers with e2e/peers/start.sh DIR "
                         "and export MAILCRED_PEERS_ENV=DIR/env")
    return read_env(env_file)


def start(peers_dir, quiet=False, timeout=60):
    """e2e/peers/start.sh DIR; returns DIR/env read."""
    subprocess.run([str(PEERS_SCRIPTS / "start.sh"), str(peers_dir)], check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL if quiet else None)
    return read_env(Path(peers_dir) / "env")


def stop(peers_dir):
    subprocess.run([str(PEERS_SCRIPTS / "stop.sh"), str(peers_dir)], capture_output=True)


def set_password(peers_dir, user, password):
    """Rotates USER's upstream password (e2e/peers/set-password.sh; the password on stdin)."""
    subprocess.run([str(PEERS_SCRIPTS / "set-password.sh"), str(peers_dir), user],
                   input=password + "\n", text=True, check=True, capture_output=True, timeout=30)


def aws_env(peers, kms_endpoint=None):
    """This process's environment plus what aws-sdk-kms needs to reach moto (or a proxy in
    front of it). No instance-metadata lookups, and no KUBECONFIG unless a test sets one."""
    env = dict(os.environ)
    for k in AWS_KEYS:
        env[k] = peers[k]
    if kms_endpoint:
        env["AWS_ENDPOINT_URL"] = kms_endpoint
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.pop("KUBECONFIG", None)
    return env


def create_kms_key(peers, description):
    """A new symmetric key in moto; returns its ARN."""
    import boto3

    kms = boto3.client("kms", endpoint_url=peers["PEERS_KMS_ENDPOINT"], region_name=peers["AWS_REGION"],
                       aws_access_key_id="test", aws_secret_access_key="test")
    return kms.create_key(Description=description)["KeyMetadata"]["Arn"]


def tls_context(peers):
    """Trusts the peers' test CA only and checks the host name: what a real client does."""
    ctx = ssl.create_default_context(cafile=peers["PEERS_CA_PEM"])
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def direct_imap(peers, user=None, password=None, mode="tls", timeout=None):
    """An IMAP connection straight to dovecot over implicit TLS or STARTTLS, logged in when
    user is given."""
    host, ctx = peers["PEERS_HOST"], tls_context(peers)
    if mode == "tls":
        conn = imaplib.IMAP4_SSL(host, int(peers["PEERS_IMAP_TLS_PORT"]), ssl_context=ctx, timeout=timeout)
    elif mode == "starttls":
        conn = imaplib.IMAP4(host, int(peers["PEERS_IMAP_STARTTLS_PORT"]), timeout=timeout)
        conn.starttls(ssl_context=ctx)
    else:
        raise ValueError(f"unknown IMAP mode {mode}")
    if user is not None:
        conn.login(user, password)
    return conn


def delivered(peers, user, password, subject):
    """True when USER's INBOX (read directly from dovecot) has a message with that subject."""
    m = direct_imap(peers, user, password)
    try:
        m.select("INBOX", readonly=True)
        typ, data = m.search(None, "SUBJECT", f'"{subject}"')
        return typ == "OK" and bool(data[0].split())
    finally:
        m.logout()
