"""`kubectl mailcred seal` / `keygen` as the suites run them: the password goes through stdin
only (--password-stdin), never argv or the environment."""
import os
import subprocess

from . import PLUGIN


class SealError(RuntimeError):
    pass


def smtp_endpoint(peers, port=None, tls="starttls"):
    """(host, port, TLS mode) of the peers' submission port (or a proxy's port in front of it)."""
    return ("localhost", port or peers["PEERS_SMTP_STARTTLS_PORT"], tls)


def imap_endpoint(peers, port=None, tls="implicit"):
    return ("localhost", port or peers["PEERS_IMAP_TLS_PORT"], tls)


def keygen(path, plugin=PLUGIN):
    """A new local key file (replacing one left by an earlier run); returns the tool's stderr."""
    path.unlink(missing_ok=True)
    r = subprocess.run([str(plugin), "keygen", "-o", str(path)], capture_output=True, text=True, check=True)
    return r.stderr


def seal(out, *, user, password, kms, ca_file, smtp=None, imap=None, namespace, name="mail",
         service_account="app", allowed_recipient="*@example.test", allowed_mailbox="INBOX",
         max_recipients=None, max_message_bytes=None, env=None, plugin=PLUGIN, timeout=60):
    """Seals a MailCredential for `user` into `out`, atomically (the sidecar polling the file
    never reads half of one). smtp/imap: (host, port, TLS mode). kms: "aws:ARN" or
    "local:KEYFILE". Returns the tool's output (for the leak scan); raises SealError."""
    args = [str(plugin), "seal", "--name", name, "--namespace", namespace, "--username", user,
            "--service-account", service_account, "--allowed-sender", user,
            "--allowed-recipient", allowed_recipient, "--allowed-mailbox", allowed_mailbox,
            "--ca-file", str(ca_file), "--kms", kms, "--password-stdin", "-w", f"{out}.tmp"]
    if max_recipients is not None:
        args += ["--max-recipients", str(max_recipients)]
    if max_message_bytes is not None:
        args += ["--max-message-bytes", str(max_message_bytes)]
    for flag, endpoint in (("smtp", smtp), ("imap", imap)):
        if endpoint:
            host, port, tls = endpoint
            args += [f"--{flag}", f"{host}:{port}", f"--{flag}-tls", tls]
    r = subprocess.run(args, input=password + "\n", capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        raise SealError(f"seal failed: {r.stderr}")
    os.replace(f"{out}.tmp", out)
    return r.stdout + r.stderr


def seal_for_peers_user(workdir, peers, namespace, plugin=PLUGIN):
    """PEERS_USER's credential sealed with a new local key (no KMS): what a measurement that
    must not wait on moto runs with. Returns (key file, credential file) in workdir."""
    key = workdir / "local.key"
    keygen(key, plugin=plugin)
    cred = workdir / "mailcredential.yaml"
    seal(cred, user=peers["PEERS_USER"], password=peers["PEERS_PASSWORD"], kms=f"local:{key}",
         ca_file=peers["PEERS_CA_PEM"], smtp=smtp_endpoint(peers), imap=imap_endpoint(peers),
         namespace=namespace, plugin=plugin)
    return key, cred


def seal_oauth_client_credentials(out, peers, *, kms, namespace, name="mail-oauth", client="secret",
                                  service_account="app", plugin=PLUGIN, timeout=60):
    """PEERS_USER's credential with an OAuth client-credentials grant at the peers'
    oidc-provider (client_secret_post; the secret through stdin only), XOAUTH2 upstream to the
    peers' postfix and dovecot. Returns the tool's output (for the leak scan); raises SealError."""
    client_id = peers["PEERS_OAUTH_CLIENT_ID" if client == "secret" else "PEERS_OAUTH_SHORT_CLIENT_ID"]
    user = peers["PEERS_USER"]
    args = [str(plugin), "seal", "--name", name, "--namespace", namespace, "--username", user,
            "--service-account", service_account, "--allowed-sender", user,
            "--allowed-recipient", "*@example.test", "--allowed-mailbox", "INBOX",
            "--ca-file", peers["PEERS_CA_PEM"], "--kms", kms,
            "--oauth-provider", "generic", "--grant", "clientCredentials",
            "--client-id", client_id, "--token-endpoint", peers["PEERS_OAUTH_TOKEN_ENDPOINT"],
            "--scope", peers["PEERS_OAUTH_SCOPE"], "--oauth-ca-file", peers["PEERS_CA_PEM"],
            "--client-secret-stdin", "-w", f"{out}.tmp"]
    for flag, (host, port, tls) in (("smtp", smtp_endpoint(peers)), ("imap", imap_endpoint(peers))):
        args += [f"--{flag}", f"{host}:{port}", f"--{flag}-tls", tls]
    r = subprocess.run(args, input=peers["PEERS_OAUTH_CLIENT_SECRET"] + "\n", capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        raise SealError(f"seal (OAuth) failed: {r.stderr}")
    os.replace(f"{out}.tmp", out)
    return r.stdout + r.stderr
