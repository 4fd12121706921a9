#!/usr/bin/env python3
"""The "application" side of the IMAP proxy tests: python imaplib against the proxy.

Usage: imap_app.py SCENARIO PORT JSON_ARGS. Prints one JSON object with what it saw
(responses verbatim; every byte received goes to args["transcript_path"]), for the Rust test to assert on.
Plain IMAP to the proxy on loopback, as an application in the pod would.
"""
import hashlib
import imaplib
import json
import os
import sys
import time


class RecordingIMAP(imaplib.IMAP4):
    """imaplib client that keeps every byte the proxy sent."""

    def __init__(self, host, port):
        self.received = bytearray()
        super().__init__(host, port, timeout=60)

    def read(self, size):
        data = super().read(size)
        self.received += data
        return data

    def readline(self):
        line = super().readline()
        self.received += line
        return line


def status(resp):
    typ, data = resp
    return {"typ": typ, "data": [d.decode("utf-8", "replace") if isinstance(d, bytes) else repr(d) for d in data]}


def raw(m, command):
    """Runs a command and returns its tagged result text (imaplib raises on NO/BAD)."""
    tag = m._new_tag()
    m.send(tag + b" " + command.encode() + b"\r\n")
    lines = []
    while True:
        line = m.readline()
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if line.startswith(tag + b" "):
            return {"tagged": lines[-1][len(tag) + 1:], "untagged": lines[:-1]}


def deliver(maildir, subject, body_len, marker):
    """Writes a message into a maildir's new/ (dovecot picks it up, IDLE included)."""
    name = "%d.M%dP%d.test" % (time.time(), time.monotonic_ns() % 10**9, os.getpid())
    head = ("From: sender@example.test\r\nTo: app@example.test\r\nSubject: %s\r\n"
            "Message-ID: <%s@example.test>\r\n\r\n" % (subject, name)).encode()
    line = (marker + " 0123456789 abcdefghijklmnopqrstuvwxyz\r\n").encode()
    body = (line * (body_len // len(line) + 1))[:body_len]
    msg = head + body
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(msg)
    os.chown(tmp, 5000, 5000)
    os.rename(tmp, os.path.join(maildir, "new", name))
    return hashlib.sha256(msg).hexdigest(), len(msg)


def select_read_only(m):
    """SELECT on a read-only credential: the proxy sends EXAMINE upstream and the app gets
    [READ-ONLY], which imaplib reports by raising (after entering the SELECTED state)."""
    try:
        m.select("INBOX")
    except imaplib.IMAP4.readonly as e:
        # An application that accepts read-only access carries on (imaplib would otherwise
        # raise on every later command).
        m.is_readonly = True
        return {"typ": "OK", "readonly_raised": str(e), "state": m.state}
    return {"typ": "OK", "readonly_raised": None, "state": m.state}


def read_only(m, args):
    out = {"greeting_caps": sorted(m.capabilities)}
    out["login"] = status(m.login("app-user", "app-words-never-go-upstream"))
    out["capability"] = status(m.capability())
    out["list"] = status(m.list())
    out["lsub"] = status(m.lsub())
    out["select"] = select_read_only(m)
    out["select_untagged"] = {k: [v.decode() if isinstance(v, bytes) else v for v in vals]
                              for k, vals in m.untagged_responses.items()}
    typ, data = m.uid("SEARCH", None, "SUBJECT", args["marker"])
    uids = data[0].split()
    out["search"] = [u.decode() for u in uids]
    fetched = []
    for uid in uids:
        typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
        body = data[0][1]
        fetched.append({"uid": uid.decode(), "len": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    out["fetched"] = fetched
    out["flags"] = status(m.uid("FETCH", b",".join(uids).decode() if uids else "1", "(FLAGS)"))
    refused = {}
    for name, cmd in [
        ("STORE", "STORE 1 +FLAGS (\\Deleted)"),
        ("UID STORE", "UID STORE 1 +FLAGS (\\Seen)"),
        ("COPY", "COPY 1 Archive.2024"),
        ("UID COPY", "UID COPY 1 Archive.2024"),
        ("MOVE", "MOVE 1 Archive.2024"),
        ("UID MOVE", "UID MOVE 1 Archive.2024"),
        ("EXPUNGE", "EXPUNGE"),
        ("UID EXPUNGE", "UID EXPUNGE 1"),
        ("APPEND", "APPEND INBOX {5}"),
        ("CREATE", "CREATE Archive.new"),
        ("DELETE", "DELETE Archive.2024"),
        ("RENAME", "RENAME Archive.2024 Archive.2025"),
        ("SUBSCRIBE", "SUBSCRIBE INBOX"),
        ("UNSUBSCRIBE", "UNSUBSCRIBE INBOX"),
        ("SETACL", "SETACL INBOX other lr"),
        ("SETQUOTA", "SETQUOTA \"\" (STORAGE 1)"),
        ("SELECT Secret", "SELECT Secret"),
        ("EXAMINE Secret", "EXAMINE Secret"),
        ("STATUS Secret", "STATUS Secret (MESSAGES)"),
        ("SELECT mUTF-7 spoof", "SELECT &AEk-NBOX"),
        ("XYZZY", "XYZZY"),
        ("GETACL", "GETACL INBOX"),
        ("COMPRESS", "COMPRESS DEFLATE"),
        ("STARTTLS", "STARTTLS"),
        ("LOGIN again", "LOGIN a b"),
    ]:
        refused[name] = raw(m, cmd)
    out["refused"] = refused
    out["status_inbox"] = raw(m, "STATUS INBOX (MESSAGES UIDNEXT)")
    out["status_archive"] = raw(m, "STATUS Archive.2024 (MESSAGES)")
    out["list_status"] = raw(m, 'LIST "" "*" RETURN (STATUS (MESSAGES))')
    out["id"] = raw(m, 'ID ("name" "app")')
    out["enable"] = raw(m, "ENABLE UTF8=ACCEPT CONDSTORE")
    out["examine"] = raw(m, "EXAMINE INBOX")
    out["logout"] = status(m.logout())
    return out


def idle(m, args):
    out = {"login": status(m.login("x", "y"))}
    out["select"] = select_read_only(m)
    exists_before = int(m.untagged_responses.get("EXISTS", [b"0"])[-1])
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    out["idle_cont"] = m.readline().decode().rstrip()
    out["delivered"] = deliver(args["maildir"], "idle " + args["marker"], 2048, args["marker"])
    seen = []
    deadline = time.time() + 30
    while time.time() < deadline:
        line = m.readline().decode().rstrip()
        seen.append(line)
        if line.endswith("EXISTS"):
            break
    out["idle_seen"] = seen
    m.send(b"DONE\r\n")
    out["idle_done"] = m.readline().decode().rstrip()
    while not out["idle_done"].startswith(tag.decode()):
        out["idle_done"] = m.readline().decode().rstrip()
    out["exists_before"] = exists_before
    # A command instead of DONE ends IDLE with BAD; the session goes on.
    tag2 = m._new_tag()
    m.send(tag2 + b" IDLE\r\n")
    out["idle2_cont"] = m.readline().decode().rstrip()
    m.send(b"X1 NOOP\r\n")
    lines = []
    while True:
        line = m.readline().decode().rstrip()
        lines.append(line)
        if line.startswith(tag2.decode() + " "):
            break
    out["idle2_end"] = lines
    out["noop_after"] = raw(m, "NOOP")
    m.logout()
    return out


def writable(m, args):
    out = {"login": status(m.login("x", "y"))}
    out["capability"] = status(m.capability())
    msg = b"From: a@example.test\r\nSubject: append " + args["marker"].encode() + b"\r\n\r\n" + b"x" * (1024 * 1024) + b"\r\n"
    out["append"] = status(m.append("INBOX", None, None, msg))
    out["append_secret"] = raw(m, "APPEND Secret {5+}\r\nhello")
    out["create"] = raw(m, "CREATE Work.%s" % args["marker"])
    out["create_secret"] = raw(m, "CREATE Secret.%s" % args["marker"])
    out["select"] = status(m.select("INBOX"))
    out["select_untagged"] = sorted(m.untagged_responses)
    typ, data = m.uid("SEARCH", None, "SUBJECT", '"append %s"' % args["marker"])
    uid = data[0].split()[-1].decode()
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
    out["appended_ok"] = data[0][1] == msg
    out["store"] = raw(m, "UID STORE %s +FLAGS (\\Seen)" % uid)
    out["copy"] = raw(m, "UID COPY %s Work.%s" % (uid, args["marker"]))
    out["copy_secret"] = raw(m, "UID COPY %s Secret" % uid)
    out["move"] = raw(m, "UID MOVE %s Work.%s" % (uid, args["marker"]))
    out["status_work"] = raw(m, "STATUS Work.%s (MESSAGES)" % args["marker"])
    out["rename"] = raw(m, "RENAME Work.%s Work.%s-old" % (args["marker"], args["marker"]))
    out["delete"] = raw(m, "DELETE Work.%s-old" % args["marker"])
    out["setacl"] = raw(m, "SETACL INBOX other lr")
    m.logout()
    return out


def main():
    scenario, port, args = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    m = RecordingIMAP("127.0.0.1", port)
    out = {"error": None}
    try:
        out.update(globals()[scenario](m, args))
    except Exception as e:  # reported to the Rust test, which fails with it
        out["error"] = "%s: %s" % (type(e).__name__, e)
    with open(args["transcript_path"], "wb") as f:
        f.write(m.received)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
