"""The registration API's bad-input table (issue 13), driven with curl by accounts.py: each
case must get a 4xx with a JSON error {"error": {"code", "field"?, "message", "fix"?}} and leave
no MailCredential behind. One row per case; the rows are what docs/reliability.md lists."""
import json

from mailcred_e2e.accountset import account_body, write_secret_file


def cases(run):
    """(label, request kwargs for Registration.__call__, the field the error must name or None)."""
    p = run.peers
    user, password = run.accounts["alice"]

    def body(**over):
        b = account_body(p, user, password, name=f"bad-{len(over)}")
        for k, v in over.items():
            if v is None:
                b.pop(k, None)
            else:
                b[k] = v
        return b

    smtp = account_body(p, user, password)["smtp"]
    return [
        ("missing username", {"body": body(username=None)}, "username"),
        ("missing password", {"body": body(password=None)}, "password"),
        ("no endpoint at all", {"body": body(smtp=None, imap=None)}, None),
        ("bad host", {"body": body(smtp=dict(smtp, host="bad host!"))}, "smtp.host"),
        ("port 0", {"body": body(smtp=dict(smtp, port=0))}, "smtp.port"),
        ("port 70000", {"body": body(smtp=dict(smtp, port=70000))}, "smtp.port"),
        ("tls none", {"body": body(smtp=dict(smtp, tls="none"))}, "smtp.tls"),
        ("password over the size limit (1025 bytes)", {"body": body(password="p" * 1025)}, "password"),
        ("name not a DNS label", {"body": body(name="Not_A_Name")}, "name"),
        ("duplicate name (alice exists)", {"body": dict(body(), name="alice")}, "name"),
        ("policy pattern the sidecar would not match",
         {"body": body(policy={"smtp": {"allowedSenders": ["alice@"]}})}, "policy.smtp.allowedSenders"),
        ("lifetime below the minimum (59 s)", {"body": body(lifetimeSeconds=59)}, "lifetimeSeconds"),
        ("unknown field", {"body": body(usernme="x")}, "usernme"),
        ("body over the bound (70 KiB)", {"raw": b'{"username":"' + b"u" * (70 * 1024) + b'"}'}, None),
        ("malformed JSON", {"raw": b'{"username": '}, None),
        ("wrong content type", {"body": body(), "ctype": "text/plain"}, None),
        ("wrong token", {"body": body(), "header": "bad"}, None),
    ]


def step_bad_input(run):
    c, reg = run.c, run.reg
    bad_header = write_secret_file(run.work / "registration-bad.header", "Authorization: Bearer wrong-token\n")
    before = set(run.stored())
    creates_before = len(run.api.recorded("create"))
    rows = []
    for label, kwargs, field in cases(run):
        if kwargs.get("header") == "bad":
            kwargs = dict(kwargs, header=bad_header)
        code, body = reg("POST", "/v1/accounts", **kwargs)
        err = body.get("error") if isinstance(body, dict) else None
        ok = (400 <= code < 500 and isinstance(err, dict) and bool(err.get("code")) and bool(err.get("message"))
              and "fix" in err and "field" in err)
        if field is not None:
            ok = ok and field.lower() in str(err.get("field", "")).lower()
        c.record(json.dumps(body)[:2000])
        c.check(f"bad input: {label} -> {code} {err.get('code') if isinstance(err, dict) else body!r:.60}"
                + (f" field {err.get('field')}" if isinstance(err, dict) and err.get("field") else ""),
                ok, f"{code} {json.dumps(body)[:300]}")
        rows.append({"case": label, "status": code, "error": err})
    (run.work / "bad-input.json").write_text(json.dumps(rows, indent=1))
    creates = run.api.recorded("create")[creates_before:]
    c.check("bad input: nothing half-created (no new MailCredential; at most the duplicate reached the API)",
            set(run.stored()) == before and len(creates) <= 1, f"{sorted(set(run.stored()) - before)} {len(creates)}")
    code, body = reg("GET", "/v1/accounts", header=bad_header)
    c.check("GET /v1/accounts with a wrong token -> 401", code == 401, f"{code} {body}")
