"""Client-side checks for selftest.sh: IMAP over TLS with the test CA, and KMS against moto.

Each subcommand reads the peers' settings from the environment (selftest.sh exports DIR/env),
prints one line saying what it saw, and exits 0 on success, 1 on failure.
"""

import imaplib
import os
import ssl
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "lib"))
from mailcred_e2e import peers as peerlib  # noqa: E402


def env(key):
    value = os.environ.get(key)
    if not value:
        sys.exit(f"{key} is not set: export the peers' env file first")
    return value


def peers():
    """The env file of the peers selftest.sh exported (PEERS_DIR)."""
    return peerlib.read_env(Path(env("PEERS_DIR")) / "env")


def imap_connect(mode):
    """An IMAP connection that verifies the chain against the test CA only, and the host name."""
    return peerlib.direct_imap(peers(), mode=mode, timeout=10)


def imap_wait(mode, user, password, tokens, timeout_s=15.0):
    """Logs in and polls INBOX until a message with each token in its Subject is there."""
    conn = imap_connect(mode)
    try:
        conn.login(user, password)
        cipher = conn.sock.cipher() if hasattr(conn.sock, "cipher") else None
        deadline = time.monotonic() + timeout_s
        missing = list(tokens)
        while True:
            conn.select("INBOX", readonly=True)
            missing = []
            for token in tokens:
                typ, data = conn.search(None, "SUBJECT", f'"{token}"')
                if typ != "OK" or not data or not data[0].split():
                    missing.append(token)
            if not missing:
                break
            if time.monotonic() > deadline:
                print(f"{user}: not delivered within {timeout_s}s: {missing}")
                return 1
            time.sleep(0.1)
        # Fetch one back to prove the body is readable, not only indexed.
        typ, data = conn.search(None, "SUBJECT", f'"{tokens[0]}"')
        num = data[0].split()[0]
        typ, msg = conn.fetch(num, "(RFC822)")
        if typ != "OK" or tokens[0].encode() not in msg[0][1]:
            print(f"{user}: fetched message does not contain {tokens[0]}")
            return 1
        print(f"{user}: {len(tokens)} message(s) found over IMAP {mode} ({cipher[1] if cipher else '?'})")
        return 0
    finally:
        try:
            conn.logout()
        except Exception:
            pass


def imap_login(mode, user, password, expect):
    """expect 'ok' or 'fail': LOGIN must succeed or be refused (NO [AUTHENTICATIONFAILED])."""
    conn = imap_connect(mode)
    try:
        conn.login(user, password)
        outcome = "ok"
        detail = "logged in"
    except imaplib.IMAP4.error as err:
        outcome = "fail"
        detail = str(err)
    finally:
        try:
            conn.logout()
        except Exception:
            pass
    print(f"IMAP {mode} LOGIN {user}: {detail}")
    if outcome == "fail" and "AUTHENTICATIONFAILED" not in detail:
        print("refused, but not as an authentication failure")
        return 1
    return 0 if outcome == expect else 1


def imap_untrusted_ca():
    """A client that trusts only the system CAs must refuse the peers' certificate."""
    ctx = ssl.create_default_context()
    try:
        conn = imaplib.IMAP4_SSL(env("PEERS_HOST"), int(env("PEERS_IMAP_TLS_PORT")), ssl_context=ctx, timeout=10)
    except ssl.SSLCertVerificationError as err:
        print(f"refused as expected: {err.verify_message}")
        return 0
    conn.logout()
    print("connected although the test CA was not trusted")
    return 1


def kms():
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("kms", endpoint_url=env("AWS_ENDPOINT_URL"), region_name=env("AWS_REGION"))
    key_id = client.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    context = {"mailcred/namespace": "mail", "mailcred/name": "app-credential"}
    data_key = client.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
    if len(data_key["Plaintext"]) != 32:
        print(f"data key has {len(data_key['Plaintext'])} bytes, expected 32")
        return 1
    same = client.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=context)
    if same["Plaintext"] != data_key["Plaintext"]:
        print("Decrypt with the same EncryptionContext returned another key")
        return 1
    other = dict(context, **{"mailcred/name": "someone-else"})
    try:
        client.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=other)
    except ClientError as err:
        code = err.response["Error"]["Code"]
        if code != "InvalidCiphertextException":
            print(f"Decrypt with another EncryptionContext failed with {code}, expected InvalidCiphertextException")
            return 1
        print(f"key {key_id}: GenerateDataKey+Decrypt ok; other context -> {code}")
        return 0
    print("Decrypt with another EncryptionContext succeeded")
    return 1


def concurrent(n_imap, n_smtp):
    """n_imap IMAP TLS sessions and n_smtp SMTP STARTTLS+AUTH sessions, all open and logged in
    at the same moment (a barrier holds every session until all are in), then each selects
    INBOX or submits a message. Proves the peers take that many simultaneous sessions from one
    user and one IP (process limits, mail_max_userip_connections) without refusing anyone."""
    import smtplib
    import threading

    host, user, password = env("PEERS_HOST"), env("PEERS_USER"), env("PEERS_PASSWORD")
    ctx = peerlib.tls_context(peers())
    all_in = threading.Barrier(n_imap + n_smtp)
    errors = []
    lock = threading.Lock()

    def record(kind, i, err):
        with lock:
            errors.append(f"{kind} {i}: {type(err).__name__}: {err}")
        all_in.abort()  # the others stop waiting for a session that will never arrive

    def imap_one(i):
        try:
            conn = imaplib.IMAP4_SSL(host, int(env("PEERS_IMAP_TLS_PORT")), ssl_context=ctx, timeout=30)
            conn.login(user, password)
            all_in.wait(timeout=30)
            conn.select("INBOX", readonly=True)
            conn.logout()
        except Exception as err:
            record("imap", i, err)

    def smtp_one(i):
        try:
            # local_hostname: no getfqdn() (a DNS lookup per session) for the EHLO name.
            with smtplib.SMTP(host, int(env("PEERS_SMTP_STARTTLS_PORT")), local_hostname="selftest.example.test", timeout=30) as conn:
                conn.starttls(context=ctx)
                conn.login(user, password)
                all_in.wait(timeout=30)
                conn.sendmail(user, [user], f"Subject: load {i}\r\n\r\nload test {i}\r\n")
        except Exception as err:
            record("smtp", i, err)

    threads = [threading.Thread(target=imap_one, args=(i,)) for i in range(n_imap)]
    threads += [threading.Thread(target=smtp_one, args=(i,)) for i in range(n_smtp)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    if any(t.is_alive() for t in threads):
        errors.append("some sessions still running after 90 s")
    if errors:
        real = [e for e in errors if "BrokenBarrierError" not in e] or errors
        print(f"{len(real)} session(s) failed, first: {real[0]}")
        return 1
    print(f"{n_imap} IMAP TLS + {n_smtp} SMTP STARTTLS sessions logged in at the same time, all served")
    return 0


def bulk():
    """The bulk users: DIR/bulk-users.tsv is 0600 and has PEERS_BULK_USERS rows; the first,
    a middle and the last user log in over IMAP TLS ({SSHA256} entries) and a swapped
    password is refused."""
    p = peers()
    count, path = int(p["PEERS_BULK_USERS"]), Path(p["PEERS_BULK_USERS_FILE"])
    mode = path.stat().st_mode & 0o777
    if mode != 0o600:
        print(f"{path} has mode {mode:o}, expected 600")
        return 1
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    if len(rows) != count or rows[0][0] != "user0001@example.test":
        print(f"{len(rows)} rows, first {rows[0][0] if rows else None}; expected {count} from user0001")
        return 1
    for user, password in (rows[0], rows[len(rows) // 2], rows[-1]):
        conn = imap_connect("tls")
        try:
            conn.login(user, password)
            typ, _ = conn.select("INBOX")
            if typ != "OK":
                print(f"{user}: SELECT INBOX {typ}")
                return 1
        finally:
            conn.logout()
    conn = imap_connect("tls")
    try:
        conn.login(rows[0][0], rows[1][1])
        print(f"{rows[0][0]} logged in with another user's password")
        return 1
    except imaplib.IMAP4.error:
        pass
    finally:
        try:
            conn.logout()
        except Exception:
            pass
    print(f"{count} bulk users, TSV 0600; {rows[0][0]}, {rows[len(rows) // 2][0]}, {rows[-1][0]} "
          "logged in over IMAP TLS; a wrong password refused")
    return 0


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "imap-wait":
        return imap_wait(args[0], args[1], os.environ["SELFTEST_PASSWORD"], args[2:])
    if cmd == "imap-login":
        return imap_login(args[0], args[1], os.environ["SELFTEST_PASSWORD"], args[2])
    if cmd == "imap-untrusted-ca":
        return imap_untrusted_ca()
    if cmd == "concurrent":
        return concurrent(int(args[0]), int(args[1]))
    if cmd == "kms":
        return kms()
    if cmd == "bulk":
        return bulk()
    sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as err:  # any surprise is a failed check, with its reason
        print(f"{type(err).__name__}: {err}")
        sys.exit(1)
