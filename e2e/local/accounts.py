#!/usr/bin/env python3
"""Account sets end to end (issue 13): an application registers mailboxes through the
sidecar's registration API and picks one per connection.

Real postfix + dovecot + moto (e2e/peers, with the bulk users), the fake Kubernetes API in
store mode (mailcred_e2e.apistore, with the chart's admission rule as a hook), the sidecar in
account-set mode (KMS seal key in moto) and real clients: curl for the API, smtplib and
imaplib as the app. Checks: registration of PEERS_USER, PEERS_USER2 and a bulk user; a wrong
password -> 422 with nothing stored; send and read as each, isolation between them; the same
refusal for a wrong token, an unknown account, another set's and another ServiceAccount's;
delete -> refused at once and the open IMAP session ends; a lifetime that expires; bad input
-> 4xx JSON errors (accounts_input.py); no password in any log, API object or output.

Usage: accounts.py WORKDIR [--store-direct]   (--store-direct: accounts created in the API
store instead of registered, for a build without the registration API.) Prints PASS/FAIL lines, "N passed, M failed"; exit 1 on failure.
"""
import datetime
import json
import secrets
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import accounts_input  # noqa: E402
from mailcred_e2e import peers as peerlib  # noqa: E402
from mailcred_e2e.accountset import (REGISTERED_BY_LABEL, SET_LABEL, Registration, account_body,  # noqa: E402
                                     account_sidecar, bulk_users, imap_as, sealed_outline, search,
                                     secret_forms, session_ended, smtp_as, smtp_auth_reply, vap_admit)
from mailcred_e2e.apistore import StoreApiServer  # noqa: E402
from mailcred_e2e.checks import Checks  # noqa: E402
from mailcred_e2e.leaks import find_leaks  # noqa: E402
from mailcred_e2e.mail import smtp_send  # noqa: E402
from mailcred_e2e.wait import wait_until  # noqa: E402

NS, SET, SA = "e2e", "crm", "app"
VERBS = {"get", "list", "watch", "create", "delete"}  # the chart's Role for an account set


class Run:
    def __init__(self, c, work, peers):
        self.c, self.work, self.peers = c, work, peers
        self.token = secrets.token_hex(24)
        self.api_token = secrets.token_hex(24)
        bulk = bulk_users(peers)
        self.accounts = {  # name -> (user, password)
            "alice": (peers["PEERS_USER"], peers["PEERS_PASSWORD"]),
            "bob": (peers["PEERS_USER2"], peers["PEERS_PASSWORD2"]),
            "carol": bulk[41],
        }
        self.wrong_password = "wrong-" + secrets.token_hex(8)
        self.secrets = [s for _, pw in self.accounts.values() for s in secret_forms(pw)]
        self.secrets += secret_forms(self.wrong_password) + secret_forms(peers["PEERS_ROTATE_PASSWORD"])
        self.secrets += secret_forms(peers["PEERS_SINK_PASSWORD"])
        self.env = peerlib.aws_env(peers)
        self.kms_arn = peerlib.create_kms_key(peers, "mailcred accounts e2e")
        self.subjects = {}
        self.api = self.sc = self.reg = None
        self.direct = "--store-direct" in sys.argv[2:]

    def stored(self):
        return {o["metadata"]["name"]: o for o in self.api.store.list()[0]}

    def send_as(self, name, mech="PLAIN", token=None):
        user = self.accounts[name][0]
        subject = f"acct-{name}-{uuid.uuid4().hex[:8]}"
        code, text = smtp_as(self.sc.smtp, name, token or self.token, user, [user], subject, mech=mech)
        self.c.record(text)
        return code, text, subject


def step_start(run):
    c, peers = run.c, run.peers
    tls = Path(peers["PEERS_DIR"]) / "tls"
    # Outlines already in the namespace: another set's account and one of this set that lists
    # another ServiceAccount (both for PEERS_SINK_USER): neither may be usable here.
    kms = f"aws:{run.kms_arn}"
    other_set = sealed_outline(run.work, peers, name="helpdesk-1", user=peers["PEERS_SINK_USER"],
                               password=peers["PEERS_SINK_PASSWORD"], kms=kms, set_name="helpdesk",
                               service_account=SA, env=run.env)
    other_sa = sealed_outline(run.work, peers, name="crm-foreign", user=peers["PEERS_SINK_USER"],
                              password=peers["PEERS_SINK_PASSWORD"], kms=kms, set_name=SET,
                              service_account="someone-else", env=run.env)
    run.api = StoreApiServer(NS, run.api_token, tls / "server.pem", tls / "server.key",
                             objects=[other_set, other_sa], verbs=VERBS, admit=vap_admit(SET, SA),
                             watch_seconds=30, bookmark_seconds=2, user=f"system:serviceaccount:{NS}:{SA}")
    run.api.__enter__()
    run.sc = account_sidecar(run.work, run.api, peers["PEERS_CA_PEM"], set_name=SET, service_account=SA,
                             token=run.token, seal_kms_key=run.kms_arn, env=run.env, cache_ttl=30,
                             cache_size=100, extra=["--upstream-timeout", "10"], registration=not run.direct)
    ok = c.check("sidecar in account-set mode becomes ready", run.sc.ready(40), run.sc.tail())
    run.reg = Registration(run.sc.registration, run.token, run.work)
    watches = [r for r in run.api.recorded() if r["verb"] in ("list", "watch")]
    c.check("one list+watch by label selector, not a watch per name",
            watches and all(r["query"].get("labelSelector") == f"{SET_LABEL}={SET}" and "fieldSelector" not in r["query"]
                            for r in watches), repr([r["query"] for r in watches][:3]))
    return ok


def step_register_direct(run):
    """--store-direct: the accounts sealed with kubectl-mailcred and created in the store (what
    the registration API would create), for a sidecar build without the API wired."""
    c = run.c
    for name, (user, password) in run.accounts.items():
        started = time.monotonic()
        ok, _ = run.api.store.create(sealed_outline(run.work, run.peers, name=name, user=user, password=password,
                                                    kms=f"aws:{run.kms_arn}", set_name=SET, service_account=SA,
                                                    env=run.env))
        if name == "alice":
            sent = wait_until(lambda: run.send_as("alice")[0] == 250, 10, step=0.02)
            c.check(f"store create -> first accepted send {time.monotonic() - started:.2f} s (goal <= 1 s)",
                    sent and time.monotonic() - started <= 1.0)


def step_register(run):
    c, reg = run.c, run.reg
    for name, (user, password) in run.accounts.items():
        started = time.monotonic()
        code, body = reg("POST", "/v1/accounts", account_body(run.peers, user, password, name=name))
        c.record(json.dumps(body))
        c.check(f"register {name} ({user}) -> 201 with its name", code == 201 and isinstance(body, dict)
                and body.get("name") == name, f"{code} {body}")
        # The first send right after registration: watch latency included.
        if name == "alice":
            ok = wait_until(lambda: run.send_as("alice")[0] == 250, 10, step=0.05)
            c.check(f"registration -> first accepted send {time.monotonic() - started:.2f} s (goal <= 1 s)",
                    ok and time.monotonic() - started <= 5, "no send accepted")
    stored = run.stored()
    for name, (user, _) in run.accounts.items():
        obj = stored.get(name, {})
        meta, spec = obj.get("metadata", {}), obj.get("spec", {})
        c.check(f"{name}: MailCredential with the set and owner labels, access [{SA}], sealed",
                (meta.get("labels") or {}).get(SET_LABEL) == SET
                and (meta.get("labels") or {}).get(REGISTERED_BY_LABEL) == SA
                and (spec.get("access") or {}).get("serviceAccounts") == [SA]
                and spec.get("username") == user and spec.get("sealedSecret"), json.dumps(obj)[:400])
    before = set(stored)
    code, body = reg("POST", "/v1/accounts", account_body(run.peers, run.peers["PEERS_SINK_USER"],
                                                          run.wrong_password, name="dave"))
    c.record(json.dumps(body))
    err = (body or {}).get("error", {}) if isinstance(body, dict) else {}
    c.check("wrong password -> 422 login_failed with the server's reason", code == 422
            and err.get("code") == "login_failed" and err.get("message"), f"{code} {body}")
    c.check("wrong password: nothing stored (no MailCredential, not listed)",
            set(run.stored()) == before and "dave" not in json.dumps(reg("GET", "/v1/accounts")[1]))
    creates = run.api.recorded("create")
    c.check("the API saw one create per accepted registration only", len(creates) == 3, f"{len(creates)}")


def step_use(run):
    """Send as each account (AUTH PLAIN, AUTH LOGIN) and read as each (LOGIN, AUTHENTICATE)."""
    c, sc = run.c, run.sc
    for name, mech in (("alice", "PLAIN"), ("bob", "LOGIN"), ("carol", "PLAIN")):
        code, text, subject = run.send_as(name, mech)
        run.subjects[name] = subject
        c.check(f"send as {name} (AUTH {mech}) -> 250", code == 250, f"{code} {text}")
        user, password = run.accounts[name]
        c.check(f"{name}'s message landed in {user} (read from dovecot)",
                wait_until(lambda: peerlib.delivered(run.peers, user, password, subject), 15))
    for name, auth in (("alice", False), ("bob", True), ("carol", False)):
        ok, detail, m = imap_as(sc.imap, name, run.token, authenticate=auth)
        c.record(detail)
        if not c.check(f"IMAP {'AUTHENTICATE PLAIN' if auth else 'LOGIN'} as {name}", ok, detail):
            continue
        mine = search(m, run.subjects[name])
        others = [n for n in run.subjects if n != name and search(m, run.subjects[n])]
        c.check(f"{name} reads its own message", bool(mine))
        c.check(f"isolation: {name}'s session sees none of the others' messages", not others, repr(others))
        m.logout()
    postfix_log = Path(run.peers["PEERS_POSTFIX_LOG"]).read_text(errors="replace")
    c.check("postfix saw SASL logins as each account's own user",
            all(f"sasl_username={u}" in postfix_log for u, _ in run.accounts.values()))


def step_refusals(run):
    """Unknown account, another set's, another ServiceAccount's and a wrong token: one reply."""
    c, sc = run.c, run.sc
    cases = {"wrong token": ("alice", "x" + run.token[1:]), "unknown account": ("nobody", run.token),
             "another set's account": ("helpdesk-1", run.token),
             "an account not listing the pod's ServiceAccount": ("crm-foreign", run.token)}
    smtp_replies, imap_replies = {}, {}
    for label, (account, token) in cases.items():
        smtp_replies[label] = smtp_auth_reply(sc.smtp, account, token)
        ok, detail, m = imap_as(sc.imap, account, token)
        imap_replies[label] = "OK" if ok else detail
        if m:
            m.logout()
    c.record(repr(smtp_replies) + repr(imap_replies))
    c.check("SMTP: all four refused with the same 535 5.7.8",
            len(set(smtp_replies.values())) == 1 and all(r[0] == 535 and "5.7.8" in r[1] for r in smtp_replies.values()),
            repr(smtp_replies))
    c.check("IMAP: all four refused with the same NO [AUTHENTICATIONFAILED]",
            len(set(imap_replies.values())) == 1 and all("AUTHENTICATIONFAILED" in r for r in imap_replies.values()),
            repr(imap_replies))
    user = run.accounts["alice"][0]
    code, text, _ = smtp_send(sc.smtp, user, [user], "noauth", record=c.record)
    c.check("SMTP without AUTH in account-set mode: MAIL refused (5xx)", 500 <= code < 600, f"{code} {text}")


def step_delete(run):
    c, sc, reg = run.c, run.sc, run.reg
    ok, detail, held = imap_as(sc.imap, "bob", run.token)
    c.check("bob: an IMAP session open before the delete", ok, detail)
    started = time.monotonic()
    if run.direct:
        run.api.store.delete("bob")
    else:
        code, body = reg("DELETE", "/v1/accounts/bob")
        c.check("DELETE /v1/accounts/bob -> 2xx", 200 <= code < 300, f"{code} {body}")
    c.check("bob's MailCredential is gone from the API", "bob" not in run.stored())
    refused = wait_until(lambda: smtp_auth_reply(sc.smtp, "bob", run.token)[0] == 535, 5, step=0.05)
    took = time.monotonic() - started
    c.check(f"after delete: bob's SMTP AUTH refused ({took:.2f} s; at once means <= 1 s)", refused and took <= 1.0,
            f"{took:.2f} s")
    ok, detail, m = imap_as(sc.imap, "bob", run.token)
    c.check("after delete: bob's IMAP LOGIN refused", not ok and "AUTHENTICATIONFAILED" in detail, detail)
    if held:
        c.check("after delete: bob's open IMAP session ends", session_ended(held, 5))
    if not run.direct:
        code, _ = reg("GET", "/v1/accounts/bob")
        c.check("GET /v1/accounts/bob -> 404", code == 404, f"{code}")
    c.check("alice still works after bob's delete", run.send_as("alice")[0] == 250)


def step_lifetime_api(run):
    c, peers, reg = run.c, run.peers, run.reg
    user, password = run.accounts["alice"]
    code, body = reg("POST", "/v1/accounts", account_body(peers, user, password, name="session-1", lifetimeSeconds=3600))
    c.record(json.dumps(body))
    expires = (run.stored().get("session-1") or {}).get("spec", {}).get("expiresAt", "")
    try:
        left = (datetime.datetime.fromisoformat(expires.replace("Z", "+00:00"))
                - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    except ValueError:
        left = None
    c.check("lifetimeSeconds=3600 -> 201, spec.expiresAt about an hour ahead",
            code == 201 and left is not None and 3500 < left <= 3605, f"{code} {body} {expires}")
    reg("DELETE", "/v1/accounts/session-1")


def step_lifetime(run):
    """A lifetime through the API sets spec.expiresAt; an outline expiring in 3 s is refused after."""
    c, peers, reg = run.c, run.peers, run.reg
    if not run.direct:
        step_lifetime_api(run)
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=4)
    outline = sealed_outline(run.work, peers, name="session-2", user=peers["PEERS_ROTATE_USER"],
                             password=peers["PEERS_ROTATE_PASSWORD"], kms=f"aws:{run.kms_arn}", set_name=SET,
                             service_account=SA, expires_at=at.strftime("%Y-%m-%dT%H:%M:%SZ"), env=run.env)
    run.api.store.create(outline)
    ok = wait_until(lambda: imap_as(run.sc.imap, "session-2", run.token)[0], 3, step=0.1)
    c.check("an account expiring in 4 s works before", ok)
    time.sleep(max(0.0, (at - datetime.datetime.now(datetime.timezone.utc)).total_seconds()))
    refused = wait_until(lambda: smtp_auth_reply(run.sc.smtp, "session-2", run.token)[0] == 535, 2, step=0.05)
    c.check("after spec.expiresAt: refused (SMTP 535 within 2 s)", refused)
    ok, detail, _ = imap_as(run.sc.imap, "session-2", run.token)
    c.check("after spec.expiresAt: IMAP LOGIN refused", not ok, detail)


def step_listing(run):
    c, reg = run.c, run.reg
    if run.direct:
        return
    code, body = reg("GET", "/v1/accounts")
    text = json.dumps(body)
    c.record(text)
    names = {a.get("name") for a in (body.get("accounts", body.get("items", [])) if isinstance(body, dict) else body or [])}
    c.check("GET /v1/accounts lists alice and carol, not the deleted bob nor another set's helpdesk-1",
            code == 200 and {"alice", "carol"} <= names and not names & {"bob", "helpdesk-1"}, f"{code} {text[:300]}")
    # SMTP and IMAP refuse crm-foreign exactly like an unknown name (no probing); the listing
    # must not name it either.
    c.check("GET /v1/accounts does not name crm-foreign (this set, but not for this ServiceAccount)",
            "crm-foreign" not in names, f"{sorted(names)}")
    c.check("the listing holds no secret", not any(s in text for s in run.secrets) and "sealedSecret" not in text)
    code, body = reg("GET", "/v1/accounts/alice")
    c.check("GET /v1/accounts/alice -> 200 with username", code == 200 and isinstance(body, dict)
            and body.get("username") == run.accounts["alice"][0], f"{code} {body}")


def main():
    work = Path(sys.argv[1]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    c = Checks()
    peers = peerlib.start(work / "peers")
    run = Run(c, work, peers)
    direct = "--store-direct" in sys.argv[2:]
    try:
        if step_start(run):
            step_register_direct(run) if direct else step_register(run)
            step_use(run)
            step_refusals(run)
            if not direct:
                accounts_input.step_bad_input(run)
            step_delete(run)
            step_lifetime(run)
            step_listing(run)
    finally:
        if run.sc is not None:
            c.check("SIGTERM: sidecar exits cleanly", run.sc.stop(timeout=40) == 0)
        if run.api is not None:
            (work / "api-objects.json").write_text(json.dumps(run.api.store.list()[0], indent=1))
            (work / "api-requests.json").write_text(json.dumps(run.api.recorded(), indent=1))
            run.api.__exit__(None, None, None)
        peerlib.stop(work / "peers")
        leaks = find_leaks(work, run.secrets, c.outputs)
        c.check("no password in the sidecar's log, the API objects, requests or any output", not leaks, repr(leaks))
    return c


if __name__ == "__main__":
    s = main()
    print(s.summary())
    sys.exit(s.exit_status())
