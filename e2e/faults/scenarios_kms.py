"""Fault scenarios s1-s3: KMS slow, slower than the sidecar's bound, erroring (a KmsChaos
proxy in front of moto)."""
import smtplib
import threading
import time

from chaos import KmsChaos
from context import (KMS_BOUND_S, imap_login, is_delivered, last_temporary_failure, seal, send,
                     start_sidecar, subject)

from mailcred_e2e.sealing import imap_endpoint, smtp_endpoint
from mailcred_e2e.sidecar import file_source
from mailcred_e2e.wait import http_get


def sidecar_behind_kms_chaos(ctx, tag, label, ttl, delay=None):
    """A KmsChaos proxy in front of moto (answering `delay` s late when given), a credential
    sealed for the peers, and a sidecar that reaches KMS only through the proxy:
    (proxy, sidecar), with sidecar None when it did not get ready (a failed check)."""
    kms = KmsChaos(ctx.peers["PEERS_KMS_ENDPOINT"])
    ctx.later(kms.close)
    if delay:
        kms.set("delay", delay)
    cred = seal(ctx, ctx.workdir / f"{tag}.yaml", smtp=smtp_endpoint(ctx.peers), imap=imap_endpoint(ctx.peers))
    sc = start_sidecar(ctx, tag, file_source(cred), ctx.aws_env(kms.endpoint), ttl=ttl)
    if not ctx.suite.check(f"{label}: sidecar ready", sc.ready(), sc.tail()):
        return kms, None
    return kms, sc


def s1_kms_slow(ctx):
    """KMS answers every request after 5 s (below the 10 s bound)."""
    suite = ctx.suite
    kms, sc = sidecar_behind_kms_chaos(ctx, "s1", "s1 kms-slow", ttl=3, delay=5)
    if not sc:
        return
    subj = subject("s1")
    first = {}
    sender = threading.Thread(target=lambda: first.update(r=send(suite, sc.smtp, ctx.user, [ctx.user], subj)))
    sender.start()
    # Meanwhile a second application session only says EHLO: the SIZE it advertises is in the
    # resource's policy (not sealed), so it has no reason to wait for the decrypt.
    time.sleep(0.5)
    t0 = time.monotonic()
    try:
        with smtplib.SMTP("127.0.0.1", sc.smtp, timeout=30) as s:
            ehlo = s.ehlo()[0]
    except (smtplib.SMTPException, OSError) as e:
        ehlo = repr(e)
    ehlo_s = time.monotonic() - t0
    sender.join(timeout=70)
    code, text, took = first.get("r", (None, "no result", 0))
    suite.check("s1 kms-slow: uncached message accepted (250) with KMS 5 s slow", code == 250, f"{code} {text}")
    suite.check("s1 kms-slow: the send waited for KMS (>= 5 s)", took >= 5, f"{took:.1f} s")
    suite.check("s1 kms-slow: delivered", is_delivered(ctx, subj))
    suite.check("s1 kms-slow: the proxy saw the Decrypt", kms.decrypts() >= 1, repr(kms.targets))
    suite.check("s1 kms-slow: a new session's EHLO does not wait for KMS (fresh sidecar)",
                ehlo == 250 and ehlo_s < 2, f"EHLO {ehlo} after {ehlo_s:.1f} s")

    time.sleep(3.6)  # TTL 3 s: the plaintext is dropped, the next message must decrypt again
    before = kms.decrypts()
    barrier = threading.Barrier(2)
    results = [None, None]
    subjects = [subject("s1a"), subject("s1b")]

    def one(i):
        barrier.wait(timeout=10)
        results[i] = send(suite, sc.smtp, ctx.user, [ctx.user], subjects[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    ok = all(r and r[0] == 250 for r in results)
    suite.check("s1 kms-slow: two concurrent uncached sessions both accepted", ok, repr(results))
    suite.check("s1 kms-slow: both delivered", all(is_delivered(ctx, s) for s in subjects))
    suite.check("s1 kms-slow: exactly ONE Decrypt for the two concurrent sessions",
                kms.decrypts() - before == 1, f"{kms.decrypts() - before} Decrypt requests")
    ok_metric = sc.metric(r'mailcred_kms_decrypts_total\{result="ok"\} (\d+)')
    suite.check("s1 kms-slow: sidecar metric counts 2 decrypts in all", ok_metric == 2, repr(ok_metric))


def s2_kms_timeout(ctx):
    """KMS answers after 15 s, beyond the sidecar's 10 s bound."""
    suite = ctx.suite
    kms, sc = sidecar_behind_kms_chaos(ctx, "s2", "s2 kms-timeout", ttl=1)
    if not sc:
        return
    code, text, _ = send(suite, sc.smtp, ctx.user, [ctx.user], subject("s2-warm"))
    suite.check("s2 kms-timeout: warm-up message accepted while KMS is fine", code == 250, f"{code} {text}")
    time.sleep(1.6)  # TTL 1 s
    kms.set("delay", 15)
    before = kms.decrypts()
    result = {}
    sender = threading.Thread(target=lambda: result.update(
        r=send(suite, sc.smtp, ctx.user, [ctx.user], subject("s2"))))
    sender.start()
    time.sleep(2)  # the decrypt is now hanging in the proxy
    t0 = time.monotonic()
    try:
        healthz = http_get(f"http://127.0.0.1:{sc.admin}/healthz")[0]
    except OSError as e:
        healthz = repr(e)
    healthz_s = time.monotonic() - t0
    t0 = time.monotonic()
    try:
        with smtplib.SMTP("127.0.0.1", sc.smtp, timeout=5) as s:
            ehlo = s.ehlo()[0]
            noop = s.noop()[0]
    except (smtplib.SMTPException, OSError) as e:
        ehlo, noop = repr(e), None
    ehlo_s = time.monotonic() - t0
    sender.join(timeout=70)
    code, text, took = result.get("r", (None, "no result", 0))
    print(f"  s2: app saw after {took:.1f} s: {code} {text}")
    suite.check("s2 kms-timeout: app gets a 4xx temporary failure (no hang, no disconnect)",
                isinstance(code, int) and 400 <= code < 500, f"{code} {text}")
    suite.check(f"s2 kms-timeout: answered within the KMS bound + 4 s ({KMS_BOUND_S + 4} s)",
                took <= KMS_BOUND_S + 4, f"{took:.1f} s")
    suite.check("s2 kms-timeout: the proxy saw the Decrypt that hung", kms.decrypts() > before, repr(kms.targets))
    suite.check("s2 kms-timeout: the reply names KMS", "kms" in text.lower(), text)
    audit = last_temporary_failure(sc)
    suite.check("s2 kms-timeout: audit line outcome temporary_failure", bool(audit), repr(sc.audit("smtp")[-2:]))
    suite.check("s2 kms-timeout: audit reason names KMS", "kms" in str(audit.get("reason", "")).lower(),
                f"reason={audit.get('reason')!r}")
    suite.check("s2 kms-timeout: /healthz answers while KMS hangs", healthz == 200 and healthz_s < 2,
                f"{healthz} in {healthz_s:.1f} s")
    suite.check("s2 kms-timeout: a new SMTP session gets EHLO + NOOP while KMS hangs",
                ehlo == 250 and noop == 250 and ehlo_s < 2, f"EHLO {ehlo} NOOP {noop} in {ehlo_s:.1f} s")
    suite.check("s2 kms-timeout: sidecar still running", sc.proc.poll() is None)


def s3_kms_error(ctx):
    """KMS answers HTTP 500 (KMSInternalException); then recovers."""
    suite = ctx.suite
    kms, sc = sidecar_behind_kms_chaos(ctx, "s3", "s3 kms-500", ttl=1)
    if not sc:
        return
    pid = sc.pid
    code, text, _ = send(suite, sc.smtp, ctx.user, [ctx.user], subject("s3-warm"))
    suite.check("s3 kms-500: warm-up message accepted while KMS is fine", code == 250, f"{code} {text}")
    time.sleep(1.6)
    kms.set("http500")
    code, text, took = send(suite, sc.smtp, ctx.user, [ctx.user], subject("s3"))
    print(f"  s3: app saw after {took:.1f} s: {code} {text}")
    suite.check("s3 kms-500: app gets a 4xx temporary failure", 400 <= code < 500, f"{code} {text}")
    suite.check("s3 kms-500: the reply names KMS", "kms" in text.lower(), text)
    suite.check("s3 kms-500: the proxy answered 500", kms.statuses[500] >= 1, repr(kms.statuses))
    audit = last_temporary_failure(sc)
    suite.check("s3 kms-500: audit reason names KMS", "kms" in str(audit.get("reason", "")).lower(),
                f"reason={audit.get('reason')!r}")
    ok, detail, _ = imap_login(suite, sc.imap)
    suite.check("s3 kms-500: IMAP LOGIN -> NO [UNAVAILABLE]", not ok and "UNAVAILABLE" in detail, detail)
    kms.set("pass")
    subj = subject("s3-back")
    code, text, _ = send(suite, sc.smtp, ctx.user, [ctx.user], subj)
    suite.check("s3 kms-500: KMS back -> sending recovers", code == 250, f"{code} {text}")
    suite.check("s3 kms-500: recovered message delivered", is_delivered(ctx, subj))
    ok, detail, m = imap_login(suite, sc.imap)
    suite.check("s3 kms-500: KMS back -> IMAP LOGIN recovers", ok, detail)
    if m:
        m.logout()
    suite.check("s3 kms-500: no restart", sc.pid == pid and sc.proc.poll() is None)
