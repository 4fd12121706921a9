"""Messages and the application's side of SMTP and IMAP (plain, to the sidecar on loopback)."""
import hashlib
import imaplib
import smtplib
import time
import uuid
from email.message import EmailMessage

BODY = "hello from the app\n"


def message(sender, to, subject, from_header=None, body=BODY):
    msg = EmailMessage()
    msg["From"] = from_header or sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def big_body(size):
    """Text of at least `size` bytes, in lines an SMTP server takes."""
    line = "0123456789 the quick brown fox jumps over the lazy dog 0123456789 abcdefg\n"
    return line * (size // len(line) + 1)


def big_message(subject, size):
    """A raw RFC 5322 message of about `size` bytes whose body lines are all different, so a
    truncated or reordered copy never compares equal."""
    lines = ["From: app@example.test", "To: app@example.test", f"Subject: {subject}",
             f"Message-ID: <{uuid.uuid4().hex}@faults.example.test>", ""]
    i = 0
    while sum(len(x) + 2 for x in lines) < size:
        lines.append(f"{i:08d} " + hashlib.sha256(str(i).encode()).hexdigest())
        i += 1
    return ("\r\n".join(lines) + "\r\n").encode()


def _final_reply(send):
    """(code, text) of what the server finally said to `send()`. A disconnect or socket error
    is code -1: an application must never see one instead of a reply."""
    try:
        send()
        return 250, "accepted"
    except smtplib.SMTPRecipientsRefused as e:
        code, raw = next(iter(e.recipients.values()))
        return code, raw.decode(errors="replace")
    except smtplib.SMTPResponseException as e:
        return e.smtp_code, e.smtp_error.decode(errors="replace")
    except (smtplib.SMTPException, OSError) as e:
        return -1, f"{type(e).__name__}: {e}"


def smtp_send(port, sender, to, subject, *, from_header=None, body=BODY, timeout=60, record=None):
    """One message on a new connection to 127.0.0.1:port: (code, text, seconds); 250 when
    accepted. `record` (Checks.record) keeps the reply for the leak scan."""
    started = time.monotonic()

    def send():
        with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
            s.send_message(message(sender, to, subject, from_header, body), from_addr=sender, to_addrs=to)

    code, text = _final_reply(send)
    if record:
        record(text)
    return code, text, time.monotonic() - started


def smtp_send_on(conn, sender, to, subject, *, body=BODY, record=None):
    """One message on an open smtplib connection: (code, text)."""
    code, text = _final_reply(
        lambda: conn.send_message(message(sender, to, subject, body=body), from_addr=sender, to_addrs=to))
    if record:
        record(text)
    return code, text


def imap_login(port, user="app", password="anything", timeout=60, record=None):
    """LOGIN through the sidecar on 127.0.0.1:port: (ok, detail, connection or None). The
    sidecar takes any local login; a refusal means it could not log in upstream."""
    m = imaplib.IMAP4("127.0.0.1", port, timeout=timeout)
    try:
        typ, data = m.login(user, password)
        ok, detail = typ == "OK", repr(data)
    except imaplib.IMAP4.error as e:
        ok, detail = False, str(e)
    if record:
        record(detail)
    if not ok:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
        return False, detail, None
    return True, detail, m


def refused(command):
    """(refused, detail) of an IMAP command that should get NO (imaplib raises on some)."""
    try:
        typ, data = command()
        return typ != "OK", repr(data)
    except imaplib.IMAP4.error as e:
        return True, str(e)
