"""Fault scenarios s7-s8: the credential re-sealed, and the MailCredential deleted (Kubernetes
API source, against FakeKubeApi), while an application connection stays open."""
import imaplib
import smtplib
import uuid

from chaos import FakeKubeApi, TcpChaos
from context import imap_login, is_delivered, not_delivered, seal, send_on, start_sidecar, subject

from mailcred_e2e import memory
from mailcred_e2e.mail import big_body
from mailcred_e2e.peers import direct_imap, set_password
from mailcred_e2e.sidecar import file_source
from mailcred_e2e.wait import wait_until


def s7_resealed(ctx):
    """Upstream password rotated and the credential re-sealed while the app stays connected."""
    suite, peers = ctx.suite, ctx.peers
    user, old = peers["PEERS_ROTATE_USER"], peers["PEERS_ROTATE_PASSWORD"]
    proxy = TcpChaos("smtp-rotate", int(peers["PEERS_SMTP_STARTTLS_PORT"]))
    ctx.later(proxy.close)
    path = ctx.workdir / "s7.yaml"
    seal(ctx, path, user=user, password=old, smtp=("localhost", proxy.port, "starttls"))
    sc = start_sidecar(ctx, "s7", file_source(path), ctx.aws_env(), ttl=900,
                       extra=["--file-poll-ms", "200"])
    if not suite.check("s7 resealed: sidecar ready", sc.ready(), sc.tail()):
        return
    conn = smtplib.SMTP("127.0.0.1", sc.smtp, timeout=60)
    ctx.later(lambda: conn.close())
    conn.ehlo()
    app_socket = conn.sock
    subj1 = subject("s7-1")
    code, text = send_on(suite, conn, user, [user], subj1)
    suite.check("s7 resealed: message 1 accepted", code == 250, f"{code} {text}")
    suite.check("s7 resealed: message 1 delivered", is_delivered(ctx, subj1, user, old))
    connections = proxy.snapshot()["connections"]
    new = uuid.uuid4().hex + "-rotated"
    ctx.secrets.append(new)
    set_password(peers["PEERS_DIR"], user, new)
    reloads = sc.text().count("credential file changed; reloaded")
    seal(ctx, path, user=user, password=new, smtp=("localhost", proxy.port, "starttls"))
    suite.check("s7 resealed: the sidecar's poll picked up the re-sealed file",
                wait_until(lambda: sc.text().count("credential file changed; reloaded") > reloads, 5), sc.tail())
    subj2 = subject("s7-2")
    code, text = send_on(suite, conn, user, [user], subj2)
    suite.check("s7 resealed: message 2 on the SAME app connection accepted",
                code == 250 and conn.sock is app_socket, f"{code} {text}")
    suite.check("s7 resealed: message 2 delivered", is_delivered(ctx, subj2, user, new))
    try:
        direct_imap(peers, user, old).logout()
        old_works = True
    except imaplib.IMAP4.error:
        old_works = False
    suite.check("s7 resealed: upstream really rotated (the old password is refused)", not old_works)
    suite.check("s7 resealed: message 2 went over a new upstream connection (AUTH after the rotation)",
                proxy.snapshot()["connections"] > connections, repr(proxy.snapshot()))
    suite.check("s7 resealed: decrypted again after the re-seal", sc.text().count('"credential decrypted"') >= 2)
    try:
        conn.quit()
    except smtplib.SMTPException:
        pass


def s8_deleted(ctx):
    """The MailCredential is deleted (Kubernetes API source) while the app stays connected."""
    import yaml

    suite, peers = ctx.suite, ctx.peers
    proxy = TcpChaos("smtp-kube", int(peers["PEERS_SMTP_STARTTLS_PORT"]))
    ctx.later(proxy.close)
    path = seal(ctx, ctx.workdir / "s8.yaml", smtp=("localhost", proxy.port, "starttls"),
                imap=("localhost", peers["PEERS_IMAP_TLS_PORT"], "implicit"))
    obj = yaml.safe_load(path.read_text())
    obj["metadata"].update(resourceVersion="1", uid=str(uuid.uuid4()), generation=1)
    api = FakeKubeApi("e2e", "mail", obj)
    ctx.later(api.close)
    kubeconfig = ctx.workdir / "s8-kubeconfig.yaml"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{api.port}"}}],
        "users": [{"name": "app", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "app", "namespace": "e2e"}}],
    }))
    env = ctx.aws_env()
    env["KUBECONFIG"] = str(kubeconfig)
    api_source = ["--credential", "mail", "--namespace", "e2e", "--service-account", "app"]
    sc = start_sidecar(ctx, "s8", api_source, env, ttl=900)
    if not suite.check("s8 deleted: sidecar ready with the Kubernetes API source (fake API server)",
                       sc.ready(), f"requests={api.requests} log: {sc.tail()}"):
        return
    suite.check("s8 deleted: the sidecar watches the credential", wait_until(lambda: api.watches() >= 1, 10),
                repr(api.requests))
    conn = smtplib.SMTP("127.0.0.1", sc.smtp, timeout=60)
    ctx.later(lambda: conn.close())
    conn.ehlo()
    subj1 = subject("s8-1")
    code, text = send_on(suite, conn, ctx.user, [ctx.user], subj1)
    suite.check("s8 deleted: message 1 accepted", code == 250, f"{code} {text}")
    suite.check("s8 deleted: message 1 delivered", is_delivered(ctx, subj1))
    before = proxy.snapshot()
    api.delete()
    suite.check("s8 deleted: the sidecar saw the DELETED event",
                wait_until(lambda: "MailCredential deleted" in sc.text(), 10), sc.tail())
    subj2 = subject("s8-2")
    code, text = send_on(suite, conn, ctx.user, [ctx.user], subj2, body=big_body(20_000))
    print(f"  s8: app saw: {code} {text}")
    suite.check("s8 deleted: next message on the open connection refused with 4xx", 400 <= code < 500,
                f"{code} {text}")
    suite.check("s8 deleted: the refusal names the deletion", "delet" in text.lower(), f"{code} {text}")
    after = proxy.snapshot()
    suite.check("s8 deleted: nothing sent upstream (no new connection, no message bytes)",
                after["connections"] == before["connections"] and after["c2s"] - before["c2s"] < 200,
                f"before {before} after {after}")
    suite.check("s8 deleted: message 2 not in the mailbox", not_delivered(ctx, subj2, 3))
    ok, detail, _ = imap_login(suite, sc.imap)
    suite.check("s8 deleted: IMAP LOGIN after the deletion -> NO [UNAVAILABLE]",
                not ok and "UNAVAILABLE" in detail, detail)
    # The plaintext goes with the resource, not at the end of the TTL (900 s here): the cache
    # drops it at the next expiry tick, the SMTP pool at its next sweep (every 15 s).
    needles = memory.needles(ctx.user, ctx.password)
    gone = wait_until(lambda: not memory.holds_any(sc.pid, needles), 25, step=1)
    hits, _ = memory.scan_memory(sc.pid, needles)
    suite.check("s8 deleted: the password leaves the sidecar's memory within 25 s (TTL 900 s)", gone,
                repr({k: len(v) for k, v in hits.items()}))
