#!/usr/bin/env python3
"""Checks the fake API server's store mode (mailcred_e2e.apistore) with the real curl binary,
in the request shapes kube-rs sends (kube-core 5 request.rs): list pages, label and field
selectors, watch from a resourceVersion with bookmarks, streaming lists, create/409, delete,
merge patch, RBAC-like 401/403. Needs only a test PKI (made here with openssl).

Usage: apiserver_check.py WORKDIR   Prints PASS/FAIL lines and "N passed, M failed"."""
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "lib"))
from mailcred_e2e.apistore import StoreApiServer  # noqa: E402
from mailcred_e2e.checks import Checks  # noqa: E402
from mailcred_e2e.kubestore import SelectorError, label_match, parse_label_selector  # noqa: E402

NS, SET_LABEL = "e2e", "mailcred.io/account-set"
COLL = f"/apis/mailcred.io/v1alpha1/namespaces/{NS}/mailcredentials"


def pki(work):
    tls = work / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", "-c", f'source "{Path(__file__).resolve().parents[1]}/lib/common.sh"; '
                    f'make_test_pki "{tls}" "apiserver check CA" localhost "DNS:localhost,IP:127.0.0.1" 2'],
                   check=True, capture_output=True)
    return tls


def outline(name, aset="crm"):
    return {"apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredential",
            "metadata": {"name": name, "namespace": NS, "labels": {SET_LABEL: aset}},
            "spec": {"username": f"{name}@example.test", "access": {"serviceAccounts": ["app"]}}}


class Curl:
    def __init__(self, port, ca, token):
        self.base, self.ca, self.token = f"https://127.0.0.1:{port}", str(ca), token

    def __call__(self, method, path, body=None, token=None, ctype="application/json", max_time=10):
        args = ["curl", "-sS", "--max-time", str(max_time), "--cacert", self.ca, "-X", method,
                "-H", f"Authorization: Bearer {token or self.token}", "-w", "\n%{http_code}"]
        if body is not None:
            args += ["-H", f"Content-Type: {ctype}", "--data-binary", json.dumps(body)]
        r = subprocess.run(args + [self.base + path], capture_output=True, text=True, timeout=max_time + 5)
        text, _, code = r.stdout.rpartition("\n")
        return int(code or 0), text


def main():
    work = Path(sys.argv[1]).resolve()
    c = Checks()
    tls = pki(work)
    initial = [outline(f"acct-{i:05d}") for i in range(1200)] + [outline("other-1", "helpdesk")]
    with StoreApiServer(NS, "tok-1", tls / "server.pem", tls / "server.key", objects=initial,
                        watch_seconds=4, bookmark_seconds=0.5,
                        verbs={"get", "list", "watch", "create", "delete", "patch"}) as api:
        curl = Curl(api.port, tls / "ca.pem", "tok-1")
        sel = quote(f"{SET_LABEL}=crm")
        # The watcher's initial list: pages of 500 (watcher::Config::default page_size).
        names, cont, pages = [], "", 0
        while True:
            code, text = curl("GET", f"{COLL}?&labelSelector={sel}&limit=500" + (f"&continue={cont}" if cont else ""))
            page = json.loads(text)
            names += [o["metadata"]["name"] for o in page["items"]]
            pages += 1
            cont = page["metadata"].get("continue")
            if not cont or pages > 10:
                break
        c.check("list by labelSelector in pages of 500 (continue tokens): 1200 items in 3 pages",
                code == 200 and len(names) == 1200 and len(set(names)) == 1200 and pages == 3, f"{len(names)} {pages}")
        list_rv = int(page["metadata"]["resourceVersion"])
        code, text = curl("GET", f"{COLL}?&fieldSelector={quote('metadata.name=other-1')}")
        c.check("list by fieldSelector metadata.name", code == 200 and [o["metadata"]["name"] for o in json.loads(text)["items"]] == ["other-1"], text[:200])
        code, text = curl("GET", f"{COLL}?&labelSelector={quote('a in (b')}")
        c.check("bad labelSelector -> 400 BadRequest", code == 400 and json.loads(text)["reason"] == "BadRequest", text)

        # A watch from the list's resourceVersion sees a create, a modify and a delete.
        out = {}

        def watch():
            out["code"], out["text"] = curl("GET", f"{COLL}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true"
                                                   f"&labelSelector={sel}&resourceVersion={list_rv}", max_time=10)
        t = threading.Thread(target=watch)
        t.start()
        time.sleep(0.5)
        started = time.monotonic()
        code, text = curl("POST", COLL, outline("new-one"))
        created = json.loads(text)
        c.check("create -> 201 with uid, resourceVersion, creationTimestamp",
                code == 201 and all(created["metadata"].get(k) for k in ("uid", "resourceVersion", "creationTimestamp")), text[:300])
        code, text = curl("POST", COLL, outline("new-one"))
        c.check("create of an existing name -> 409 AlreadyExists", code == 409 and json.loads(text)["reason"] == "AlreadyExists", text)
        code, text = curl("PATCH", f"{COLL}/new-one", {"metadata": {"labels": {SET_LABEL: "crm", "x": "1"}}},
                          ctype="application/merge-patch+json")
        c.check("merge patch -> 200, new resourceVersion", code == 200 and json.loads(text)["metadata"]["labels"]["x"] == "1")
        code, text = curl("PATCH", f"{COLL}/acct-00001", {"metadata": {"labels": {SET_LABEL: "gone"}}},
                          ctype="application/merge-patch+json")
        code, text = curl("DELETE", f"{COLL}/new-one", {"preconditions": {"uid": "not-its-uid"}})
        c.check("delete with another uid as precondition -> 409 Conflict", code == 409, text[:200])
        code, text = curl("GET", f"{COLL}/new-one")
        c.check("a request after one with a body on the same server still parses", code == 200, text[:200])
        code, text = curl("DELETE", f"{COLL}/new-one", {"preconditions": {"uid": created["metadata"]["uid"]}})
        c.check("delete -> 200 with the object", code == 200 and json.loads(text)["metadata"]["name"] == "new-one", text[:200])
        code, text = curl("DELETE", f"{COLL}/new-one")
        c.check("delete again -> 404 NotFound", code == 404 and json.loads(text)["reason"] == "NotFound", text)
        t.join(15)
        took = time.monotonic() - started
        events = [json.loads(line) for line in out.get("text", "").splitlines() if line.strip()]
        kinds = [(e["type"], e["object"]["metadata"].get("name")) for e in events if e["type"] != "BOOKMARK"]
        c.check("watch from the list's resourceVersion: ADDED, MODIFIED, label change -> DELETED, DELETED",
                kinds == [("ADDED", "new-one"), ("MODIFIED", "new-one"), ("DELETED", "acct-00001"),
                          ("DELETED", "new-one")], repr(kinds))
        c.check("watch has bookmarks and ends at the server's bound (4 s), not timeoutSeconds=290",
                any(e["type"] == "BOOKMARK" for e in events) and took < 8, f"{took:.1f} s")
        code, text = curl("GET", f"{COLL}?&watch=true&timeoutSeconds=1&allowWatchBookmarks=true&labelSelector={sel}"
                                 f"&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=", max_time=10)
        events = [json.loads(line) for line in text.splitlines() if line.strip()]
        adds = [e for e in events if e["type"] == "ADDED"]
        end = [e for e in events if e["type"] == "BOOKMARK" and
               e["object"]["metadata"].get("annotations", {}).get("k8s.io/initial-events-end") == "true"]
        c.check("streaming list: 1199 ADDED then the initial-events-end BOOKMARK", len(adds) == 1199 and len(end) == 1,
                f"{len(adds)} {len(end)}")

        code, text = curl("GET", f"{COLL}/acct-00002", token="wrong")
        c.check("wrong bearer token -> 401", code == 401, text)
        code, text = curl("PUT", f"{COLL}/acct-00002", outline("acct-00002"))
        c.check("a verb the token lacks (update) -> 403 Forbidden", code == 403 and "cannot update" in text, text)
        code, text = curl("GET", "/apis/mailcred.io/v1alpha1/namespaces/other/mailcredentials")
        c.check("another namespace -> 403", code == 403, text)
        code, text = curl("GET", "/apis/mailcred.io/v1alpha1/mailcredentials")
        c.check("cluster scope -> 403", code == 403, text)
        code, text = curl("GET", f"{COLL}/acct-00002")
        c.check("get -> 200", code == 200 and json.loads(text)["spec"]["username"] == "acct-00002@example.test")
        c.check("requests recorded with verb and token check",
                any(r["verb"] == "watch" for r in api.recorded()) and any(not r["authorized"] for r in api.recorded()))

    # Selector parser: a table of what kube's ListParams::labels() may carry.
    table = [("a=b", {"a": "b"}, True), ("a==b", {"a": "b"}, True), ("a!=b", {"a": "b"}, False),
             ("a", {}, False), ("!a", {}, True), ("a in (x, y)", {"a": "y"}, True),
             ("a notin (x)", {"a": "x"}, False), ("a=b,c=d", {"a": "b", "c": "e"}, False),
             ("mailcred.io/account-set=crm", {SET_LABEL: "crm"}, True), ("a=", {"a": ""}, True)]
    bad = [row for row in table if label_match(parse_label_selector(row[0]), row[1]) != row[2]]
    c.check("label selector table (10 rows)", not bad, repr(bad))
    refused = 0
    for text in ("a=b=c", "=b", "a in b", "a,,b", "a b"):
        try:
            parse_label_selector(text)
        except SelectorError:
            refused += 1
    c.check("malformed label selectors refused (5 of 5)", refused == 5, f"{refused}")
    return c


if __name__ == "__main__":
    s = main()
    print(s.summary())
    sys.exit(s.exit_status())
