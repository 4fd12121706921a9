"""The application of the kind e2e suite: runs in a pod annotated mailcred.io/inject, holds no
mail credential, and talks plain SMTP/IMAP to the injected sidecar on 127.0.0.1.

Checks (each prints PASS/FAIL; exit status 1 on any failure):
- the webhook gave this container MAILCRED_SMTP_URL / MAILCRED_IMAP_URL on loopback;
- a message from the allowed sender is accepted (250 only after upstream accepted it);
- a disallowed envelope sender, a disallowed From header and a disallowed recipient are
  refused with 550 (policy);
- the message arrives: it is found over IMAP through the sidecar (upstream: dovecot);
- IMAP is read-only and limited to INBOX: STORE and SELECT of another mailbox are refused.
Environment: E2E_TOKEN (unique subject), E2E_USER (the credential's username).
"""

import imaplib
import os
import smtplib
import sys
import time
from email.message import EmailMessage
from urllib.parse import urlparse

TOKEN = os.environ["E2E_TOKEN"]
USER = os.environ["E2E_USER"]
results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}", flush=True)
    return ok


def message(sender, to, subject):
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m.set_content("sent through the mailcred sidecar by the kind e2e suite\n")
    return m


def loopback(url_env, scheme):
    url = urlparse(os.environ.get(url_env, ""))
    ok = url.scheme == scheme and url.hostname == "127.0.0.1" and url.port
    check(f"{url_env} points at the sidecar on loopback", bool(ok), os.environ.get(url_env, "<unset>"))
    return url.hostname or "127.0.0.1", url.port or 0


def smtp_refusal(host, port, sender, rcpt, header_from, expect_code, name):
    try:
        with smtplib.SMTP(host, port, timeout=30) as s:
            s.send_message(message(header_from, rcpt, f"{TOKEN} refused"), from_addr=sender, to_addrs=[rcpt])
        check(name, False, "accepted")
    except smtplib.SMTPSenderRefused as e:
        check(name, e.smtp_code == expect_code, f"MAIL FROM got {e.smtp_code} {e.smtp_error!r}")
    except smtplib.SMTPRecipientsRefused as e:
        codes = [c for c, _ in e.recipients.values()]
        check(name, codes == [expect_code], f"RCPT TO got {e.recipients!r}")
    except smtplib.SMTPDataError as e:
        check(name, e.smtp_code == expect_code, f"DATA got {e.smtp_code} {e.smtp_error!r}")


def main():
    smtp_host, smtp_port = loopback("MAILCRED_SMTP_URL", "smtp")
    imap_host, imap_port = loopback("MAILCRED_IMAP_URL", "imap")

    # The native sidecar is ready before this container starts; a regular one may not be yet.
    deadline = time.monotonic() + 60
    while True:
        try:
            with smtplib.SMTP(smtp_host, smtp_port, timeout=30) as s:
                refused = s.send_message(message(USER, USER, TOKEN), from_addr=USER, to_addrs=[USER])
            check("message from the allowed sender accepted", refused == {}, repr(refused))
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                check("message from the allowed sender accepted", False, "sidecar not listening")
                break
            time.sleep(1)
        except smtplib.SMTPException as e:
            check("message from the allowed sender accepted", False, repr(e))
            break

    smtp_refusal(smtp_host, smtp_port, "intruder@evil.example", USER, "intruder@evil.example", 550,
                 "disallowed envelope sender refused with 550")
    smtp_refusal(smtp_host, smtp_port, USER, USER, "ceo@evil.example", 550,
                 "disallowed From header refused with 550")
    smtp_refusal(smtp_host, smtp_port, USER, "someone@elsewhere.example", USER, 550,
                 "disallowed recipient refused with 550")

    # Any local login works (no local token configured); the sidecar logs in upstream itself.
    try:
        imap = imaplib.IMAP4(imap_host, imap_port, timeout=30)
        try:
            imap.login("app", "no-password-here")
            try:
                imap.select("INBOX")  # read-write asked for
                check("SELECT becomes EXAMINE (read-only credential)", False, "INBOX opened writable")
            except imaplib.IMAP4.readonly:
                check("SELECT becomes EXAMINE (read-only credential)", True)
        finally:
            # No LOGOUT: after raising `readonly`, imaplib raises it again for every later
            # command on this connection (its READ-ONLY untagged response stays pending).
            imap.shutdown()
    except (imaplib.IMAP4.error, OSError) as e:
        check("IMAP login through the sidecar", False, repr(e))

    found = False
    deadline = time.monotonic() + 60
    try:
        while not found and time.monotonic() < deadline:
            with imaplib.IMAP4(imap_host, imap_port, timeout=30) as imap:
                imap.login("app", "no-password-here")
                typ, _ = imap.select("INBOX", readonly=True)
                if not check("EXAMINE INBOX through the sidecar", typ == "OK", typ):
                    break
                typ, data = imap.search(None, "SUBJECT", f'"{TOKEN}"')
                ids = data[0].split() if typ == "OK" and data and data[0] else []
                if not ids:
                    time.sleep(1)
                    continue
                found = True
                typ, _ = imap.fetch(ids[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                check("FETCH of the message through the sidecar", typ == "OK", typ)
                try:
                    typ, _ = imap.store(ids[0], "+FLAGS", "(\\Deleted)")
                    check("STORE refused (read-only credential)", typ != "OK", typ)
                except imaplib.IMAP4.error:
                    check("STORE refused (read-only credential)", True)
                try:
                    typ, _ = imap.select("Junk", readonly=True)
                    check("EXAMINE of a mailbox outside allowedMailboxes refused", typ != "OK", typ)
                except imaplib.IMAP4.error:
                    check("EXAMINE of a mailbox outside allowedMailboxes refused", True)
    except (imaplib.IMAP4.error, OSError) as e:
        check("IMAP through the sidecar", False, repr(e))
    check("the message arrived (found over IMAP through the sidecar)", found)

    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
