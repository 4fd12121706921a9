"""Fault scenarios s4-s5: the upstream connection reset (RST) in the middle of SMTP DATA and
of an IMAP FETCH literal (a TcpChaos proxy in front of postfix / dovecot)."""
import hashlib
import imaplib

from chaos import TcpChaos
from context import imap_login, is_delivered, not_delivered, seal, send, start_sidecar, subject

from mailcred_e2e.mail import big_body, big_message
from mailcred_e2e.peers import direct_imap
from mailcred_e2e.sidecar import file_source


def s4_smtp_reset(ctx):
    """The upstream SMTP connection is reset (RST) in the middle of DATA."""
    suite, peers = ctx.suite, ctx.peers
    proxy = TcpChaos("smtp", int(peers["PEERS_SMTP_STARTTLS_PORT"]))
    ctx.later(proxy.close)
    cred = seal(ctx, ctx.workdir / "s4.yaml", smtp=("localhost", proxy.port, "starttls"))
    sc = start_sidecar(ctx, "s4", file_source(cred), ctx.aws_env(), ttl=900)
    if not suite.check("s4 smtp-reset: sidecar ready", sc.ready(), sc.tail()):
        return
    subj = subject("s4-warm")
    code, text, _ = send(suite, sc.smtp, ctx.user, [ctx.user], subj)
    suite.check("s4 smtp-reset: warm-up through the proxy accepted", code == 250, f"{code} {text}")
    suite.check("s4 smtp-reset: warm-up delivered (TLS through the proxy verifies)", is_delivered(ctx, subj))
    proxy.set("reset", direction="c2s", after=100_000)
    subj = subject("s4-cut")
    code, text, _ = send(suite, sc.smtp, ctx.user, [ctx.user], subj, body=big_body(300_000))
    print(f"  s4: app saw: {code} {text}")
    suite.check("s4 smtp-reset: the proxy reset the connection mid-DATA", proxy.snapshot()["resets"] == 1,
                repr(proxy.snapshot()))
    suite.check("s4 smtp-reset: app never hears 250", code != 250, f"{code} {text}")
    suite.check("s4 smtp-reset: app gets 4xx", 400 <= code < 500, f"{code} {text}")
    audit = [a for a in sc.audit("smtp") if (a.get("size") or 0) >= 300_000]
    suite.check("s4 smtp-reset: audit outcome temporary_failure",
                bool(audit) and audit[-1].get("outcome") == "temporary_failure", repr(audit[-1:]))
    suite.check("s4 smtp-reset: the cut message is not in the mailbox", not_delivered(ctx, subj, 4))
    proxy.set("pass")
    subj = subject("s4-after")
    code, text, _ = send(suite, sc.smtp, ctx.user, [ctx.user], subj, body=big_body(300_000))
    suite.check("s4 smtp-reset: next message (pass) accepted", code == 250, f"{code} {text}")
    suite.check("s4 smtp-reset: next message delivered", is_delivered(ctx, subj))


def s5_imap_reset(ctx):
    """The upstream IMAP connection is reset in the middle of a 1 MB FETCH literal."""
    suite, peers = ctx.suite, ctx.peers
    proxy = TcpChaos("imap", int(peers["PEERS_IMAP_TLS_PORT"]))
    ctx.later(proxy.close)
    cred = seal(ctx, ctx.workdir / "s5.yaml",
                smtp=("localhost", peers["PEERS_SMTP_STARTTLS_PORT"], "starttls"),
                imap=("localhost", proxy.port, "implicit"))
    sc = start_sidecar(ctx, "s5", file_source(cred), ctx.aws_env(), ttl=900)
    if not suite.check("s5 imap-reset: sidecar ready", sc.ready(), sc.tail()):
        return
    subj = subject("s5")
    original = big_message(subj, 1024 * 1024)
    m = direct_imap(peers, ctx.user, ctx.password)
    typ, _ = m.append("INBOX", None, None, original)
    m.logout()
    suite.check("s5 imap-reset: 1 MB message appended directly to dovecot", typ == "OK")

    def open_and_find():
        ok, detail, conn = imap_login(suite, sc.imap)
        if not ok:
            raise RuntimeError(f"IMAP LOGIN through the sidecar failed: {detail}")
        conn.select("INBOX", readonly=True)
        typ, data = conn.search(None, "SUBJECT", f'"{subj}"')
        ids = data[0].split() if typ == "OK" else []
        if not ids:
            raise RuntimeError(f"SEARCH through the sidecar found nothing: {data!r}")
        return conn, ids[-1]

    conn, msg_id = open_and_find()
    proxy.set("reset", direction="s2c", after=300_000)
    outcome, detail = "?", ""
    try:
        typ, data = conn.fetch(msg_id, "(BODY.PEEK[])")
        body = data[0][1] if typ == "OK" and isinstance(data[0], tuple) else b""
        outcome = "ok-complete" if typ == "OK" and body == original else f"{typ}-truncated({len(body)} B)"
        detail = repr(data)[:200]
    except imaplib.IMAP4.abort as e:
        outcome, detail = "abort", str(e)[:200]
    except imaplib.IMAP4.error as e:
        outcome, detail = "error", str(e)[:200]
    except OSError as e:
        outcome, detail = "socket-error", repr(e)
    suite.record(detail)
    try:
        conn.shutdown()
    except OSError:
        pass
    suite.check("s5 imap-reset: the proxy reset upstream mid-literal", proxy.snapshot()["resets"] == 1,
                repr(proxy.snapshot()))
    suite.check("s5 imap-reset: app sees an abort/NO/BYE, never OK with a truncated body",
                outcome in ("abort", "error", "socket-error"), f"{outcome}: {detail}")
    print(f"  s5: app-side result of the cut FETCH: {outcome}: {detail[:120]}")
    proxy.set("pass")
    conn, msg_id = open_and_find()
    typ, data = conn.fetch(msg_id, "(BODY.PEEK[])")
    body = data[0][1] if typ == "OK" and isinstance(data[0], tuple) else b""
    conn.logout()
    suite.check("s5 imap-reset: a fresh session FETCHes the whole 1 MB message intact",
                typ == "OK" and hashlib.sha256(body).digest() == hashlib.sha256(original).digest(),
                f"{typ} {len(body)} of {len(original)} B")
    sessions = [a for a in sc.audit("imap") if a.get("event") == "imap_session"]
    suite.check("s5 imap-reset: the cut session is audited as not a clean logout",
                bool(sessions) and sessions[0].get("outcome") not in ("logout", "ok", None), repr(sessions[:1]))
    suite.check("s5 imap-reset: sidecar still running", sc.proc.poll() is None)
