"""Steps of the local e2e suite about operating the sidecar: the scrapeable metrics port, the
audit trail under RUST_LOG=warn and a wrong upstream password (run.py calls them)."""
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from mailcred_e2e import REPO
from mailcred_e2e.mail import imap_login

# The sidecar runs with this RUST_LOG: diagnostics at warn (its own start-up line at info, which
# the launcher reads its ports from), so every audit line the suite sees came through the
# audit layer that RUST_LOG cannot switch off.
RUST_LOG = "warn,mailcred_sidecar=info"
AUTH_REFUSED = "the upstream refused the credential's login"


def promtool():
    return REPO / ".venv" / "bin" / "promtool"


def step_audit_despite_rust_log(run):
    suite, sc = run.suite, run.sidecar
    info_lines = [r for r in sc.records()
                  if r.get("level") == "INFO" and r.get("target", "").startswith(("mailcred_smtp", "mailcred_imap"))]
    suite.check(f"RUST_LOG={RUST_LOG} is in force: no INFO line of the front-ends",
                not info_lines, repr(info_lines[:2]))
    audit = sc.audit()
    suite.check("audit lines written at RUST_LOG=warn (their own layer)",
                any(a.get("protocol") == "smtp" for a in audit) and any(a.get("protocol") == "imap" for a in audit),
                repr(audit[-3:]))
    sessions = [a for a in audit if a.get("event") == "imap_session"]
    suite.check("audit: IMAP mailboxes and commands are JSON values, not strings",
                bool(sessions) and all(isinstance(s.get("mailboxes"), list) and isinstance(s.get("commands"), dict)
                                       for s in sessions), repr(sessions[:1]))
    smtp = [a for a in audit if a.get("protocol") == "smtp"]
    suite.check("audit: every line has the common fields (docs/audit.md)",
                all(all(k in a for k in ("timestamp", "target", "protocol", "event", "credential", "pod", "outcome"))
                    for a in audit) and all(a["event"] == "smtp_message" for a in smtp), repr(audit[:2]))


def step_metrics_port(run):
    suite, sc = run.suite, run.sidecar
    suite.check("the metrics listener is up", sc.metrics_port is not None, sc.tail())
    if sc.metrics_port is None:
        return
    status, text, ctype = sc.scrape()
    suite.record(text)
    suite.check("metrics port: classic text format without an Accept header",
                status == 200 and ctype.startswith("text/plain; version=0.0.4") and "# EOF" not in text, ctype)
    status, om, octype = sc.scrape(accept="application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
    suite.check("metrics port: OpenMetrics when Prometheus asks for it",
                status == 200 and octype.startswith("application/openmetrics-text") and om.rstrip().endswith("# EOF"),
                octype)
    suite.check("metrics port serves /metrics only (no /readyz, no /healthz)",
                sc.scrape("/readyz")[0] == 404 and sc.scrape("/healthz")[0] == 404)
    with tempfile.NamedTemporaryFile("w", suffix=".prom", delete=False) as f:
        f.write(text)
    r = subprocess.run([str(promtool()), "check", "metrics"], input=text, capture_output=True, text=True)
    suite.check("promtool check metrics accepts the sidecar's scrape", r.returncode == 0, r.stdout + r.stderr)
    r = subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(REPO / "charts" / "rules-check.py"),
                        "scrape", "mailcred_", f.name], capture_output=True, text=True)
    # The operator's series are checked by operator/tests/e2e_binary/; the sidecar's here.
    missing = [l for l in r.stderr.splitlines() if not l.startswith(("mailcred_operator_", "mailcred_credential_"))]
    suite.check("every sidecar metric the alerts and the dashboard use is in the real scrape",
                not missing, "\n".join(missing))
    Path(f.name).unlink()
    for series in ('mailcred_build_info{version="', 'mailcred_smtp_upstream_auth_failures_total 0',
                   'mailcred_imap_sessions_total{outcome="upstream_lost"} 0',
                   'mailcred_smtp_policy_denials_total{rule="smtp.rateLimits.messagesPerHour"} 0',
                   'mailcred_kms_decrypts_total{result="kms_access_denied"} 0'):
        suite.check(f"zero-initialised / build info: {series}", series in text)
    denied = re.search(r'mailcred_smtp_policy_denials_total\{rule="smtp.allowedSenders"\} (\d+)', text)
    suite.check("metrics: the refused sender is counted by its rule", denied and int(denied.group(1)) >= 1)
    ok = re.search(r'mailcred_kms_decrypts_total\{result="ok"\} (\d+)', text)
    suite.check("metrics: KMS decrypts counted", ok and int(ok.group(1)) >= 1)


def auth_errors(sc, protocol):
    return [r for r in sc.records()
            if r.get("level") == "ERROR" and AUTH_REFUSED in r.get("message", "") and r.get("protocol") == protocol]


def step_wrong_password(run):
    """A wrong password sealed: 454 for the app, an ERROR line and a counter for the operator."""
    suite, sc, user = run.suite, run.sidecar, run.user
    wrong = uuid.uuid4().hex + "-wrong"
    run.secrets.append(wrong)
    run.seal(wrong)
    time.sleep(1.0)  # the sidecar polls the file every 200 ms
    code, text = run.send(user, [user], "wrong-password")
    suite.check("wrong password: the app gets 454 (temporary)", code == 454, f"{code} {text}")
    errors = auth_errors(sc, "smtp")
    suite.check("wrong password: an ERROR line names the credential and the reply code",
                bool(errors) and errors[-1].get("credential") == "e2e/mail" and errors[-1].get("reply_code") == 535,
                repr(errors[-1:]) or sc.tail())
    ok, detail, _ = imap_login(sc.imap, "app", "x", timeout=30)
    suite.check("wrong password: IMAP LOGIN refused", not ok, detail)
    errors = auth_errors(sc, "imap")
    suite.check("wrong password: an IMAP ERROR line with the response code",
                bool(errors) and "AUTHENTICATIONFAILED" in errors[-1].get("reply_code", ""), repr(errors[-1:]))
    metrics = sc.metrics()
    for proto in ("smtp", "imap"):
        m = re.search(rf"mailcred_{proto}_upstream_auth_failures_total (\d+)", metrics)
        suite.check(f"wrong password: mailcred_{proto}_upstream_auth_failures_total counts it",
                    m and int(m.group(1)) >= 1, metrics[:300])
    run.seal(run.password)
    time.sleep(1.0)
    subject = f"e2e-fixed-{uuid.uuid4().hex[:8]}"
    code, text = run.send(user, [user], subject)
    suite.check("re-sealed with the right password: sending works again", code == 250, f"{code} {text}")
