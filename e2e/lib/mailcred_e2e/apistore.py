"""The fake API server's store mode: MailCredentials of one namespace (mailcred_e2e.kubestore)
over HTTPS on loopback, with the calls kube-rs makes:

  GET    .../namespaces/NS/mailcredentials?labelSelector=&fieldSelector=&limit=&continue=
  GET    ...?watch=true&resourceVersion=RV&timeoutSeconds=290&allowWatchBookmarks=true
         [&sendInitialEvents=true&resourceVersionMatch=NotOlderThan]   (chunked JSON events)
  POST   .../mailcredentials                 201 | 409 AlreadyExists | 422 Invalid
  GET    .../mailcredentials/NAME            200 | 404
  PATCH  .../mailcredentials/NAME[/status]   merge, apply (as merge) and JSON patches
  PUT    .../mailcredentials/NAME[/status]   409 Conflict on a stale resourceVersion
  DELETE .../mailcredentials/NAME            200 with the object | 404

One bearer token (401 otherwise) with the verbs it is granted (403 otherwise, as RBAC says),
one namespace (403 for others and cluster scope), and an optional admission hook standing in
for the chart's ValidatingAdmissionPolicy. Requests are recorded for the test to check.
"""
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from .apiserver import GROUP_PATH
from .kubestore import SelectorError, Store, label_match, field_match, parse_field_selector, parse_label_selector

MAX_BODY = 3 * 1024 * 1024  # the API server's request size limit
MAX_RECORDED = 100_000
ALL_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})


def status(code, reason, message, name=None):
    body = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "code": code, "reason": reason, "message": message}
    if name is not None:
        body["details"] = {"name": name, "group": "mailcred.io", "kind": "mailcredentials"}
    return body


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(doc, ops):
    """RFC 6902 add/replace/remove/test on object paths (what a test or controller sends)."""
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            parent.pop(int(last) if isinstance(parent, list) else last)
        elif op["op"] == "test" and parent.get(last) != op["value"]:
            raise ValueError(f"test failed at {op['path']}")
    return doc


class StoreApiServer:
    """`objects`: initial MailCredentials; `verbs`: what the token may do; `admit(verb, obj)`
    returns None or (code, reason, message) to refuse a create/update; `watch_seconds`
    bounds every watch; `bookmark_seconds`: how often a watch that allows them gets one."""

    def __init__(self, namespace, token, cert, key, *, objects=(), verbs=ALL_VERBS, admit=None,
                 watch_seconds=60, bookmark_seconds=5.0, user="system:serviceaccount:e2e:app"):
        self.store = Store(namespace)
        self.store.load(objects)
        self.namespace, self.token, self.verbs, self.admit, self.user = namespace, token, set(verbs), admit, user
        self.watch_seconds, self.bookmark_seconds = watch_seconds, bookmark_seconds
        self.requests, self.lock, self.stopping = [], threading.Lock(), threading.Event()
        self.open_watches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_POST(self):
                server._handle(self, "POST")

            def do_PUT(self):
                server._handle(self, "PUT")

            def do_PATCH(self):
                server._handle(self, "PATCH")

            def do_DELETE(self):
                server._handle(self, "DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        with self.store.cond:
            self.store.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def recorded(self, verb=None):
        with self.lock:
            return [r for r in self.requests if verb is None or r["verb"] == verb]

    # -- HTTP plumbing ---------------------------------------------------------------------
    def _reply(self, h, code, body):
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _body(self, h):
        """The request body as JSON (read once by _handle: an unread body would be parsed as
        the next request on the keep-alive connection)."""
        return json.loads(h.raw_body or b"null")

    def _handle(self, h, method):
        url = urlparse(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        collection = f"{GROUP_PATH}/namespaces/{self.namespace}/mailcredentials"
        rest = url.path[len(collection):] if url.path.startswith(collection) else None
        parts = [p for p in (rest or "").split("/") if p]
        name = parts[0] if parts else None
        sub = parts[1] if len(parts) > 1 else None
        watching = query.get("watch") in ("true", "1")
        verb = {"GET": "watch" if watching else ("get" if name else "list"), "POST": "create",
                "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
        n = int(h.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            h.close_connection = True
            return self._reply(h, 413, status(413, "RequestEntityTooLarge", "request entity too large"))
        h.raw_body = h.rfile.read(n) if n else b""
        authorized = h.headers.get("Authorization", "") == f"Bearer {self.token}"
        with self.lock:
            if len(self.requests) < MAX_RECORDED:
                self.requests.append({"method": method, "path": url.path, "query": query, "verb": verb,
                                      "name": name, "authorized": authorized, "at": time.time()})
        if not authorized:
            return self._reply(h, 401, status(401, "Unauthorized", "Unauthorized"))
        if rest is None or len(parts) > 2 or (sub and sub != "status") or (rest and not rest.startswith("/")):
            return self._reply(h, 403, status(403, "Forbidden", f'{self.user} cannot access {url.path}'))
        if verb not in self.verbs or (method == "POST" and name):
            return self._reply(h, 403, status(
                403, "Forbidden", f'mailcredentials.mailcred.io is forbidden: User "{self.user}" cannot '
                                  f'{verb} resource "mailcredentials" in API group "mailcred.io" in the '
                                  f'namespace "{self.namespace}"', name))
        try:
            code, body = getattr(self, f"_{verb}")(h, name, sub, query)
        except SelectorError as e:
            code, body = 400, status(400, "BadRequest", str(e))
        except (ValueError, KeyError, TypeError, IndexError) as e:
            code, body = 400, status(400, "BadRequest", f"{type(e).__name__}: {e}")
        if code is not None:
            self._reply(h, code, body)

    # -- verbs -----------------------------------------------------------------------------
    def _get(self, h, name, sub, query):
        obj = self.store.get(name)
        if obj is None:
            return 404, status(404, "NotFound", f'mailcredentials.mailcred.io "{name}" not found', name)
        return 200, obj

    def _list(self, h, name, sub, query):
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"))
        limit = int(query["limit"]) if query.get("limit") else None
        items, rv, more = self.store.list(labels, fields, limit, query.get("continue"))
        meta = {"resourceVersion": rv}
        if more:
            meta["continue"] = more
        return 200, {"apiVersion": self.store.api_version, "kind": "MailCredentialList",
                     "metadata": meta, "items": items}

    def _create(self, h, name, sub, query):
        obj = self._body(h)
        if not isinstance(obj, dict) or obj.get("kind") not in (None, "MailCredential"):
            return 400, status(400, "BadRequest", "the body is not a MailCredential")
        if self.admit:
            denied = self.admit("create", obj)
            if denied:
                return denied[0], status(denied[0], denied[1], denied[2], obj.get("metadata", {}).get("name"))
        if query.get("dryRun") == "All":
            return 201, obj
        ok, stored = self.store.create(obj)
        if ok:
            return 201, stored
        n = obj.get("metadata", {}).get("name")
        if stored == "AlreadyExists":
            return 409, status(409, "AlreadyExists", f'mailcredentials.mailcred.io "{n}" already exists', n)
        reason, _, message = stored.partition(": ")
        return (422 if reason == "Invalid" else 400), status(422 if reason == "Invalid" else 400, reason, message, n)

    def _update(self, h, name, sub, query):
        new = self._body(h)
        current = self.store.get(name)
        if current is None:
            return 404, status(404, "NotFound", f'mailcredentials.mailcred.io "{name}" not found', name)
        want_rv = new.get("metadata", {}).get("resourceVersion")
        if want_rv and want_rv != current["metadata"]["resourceVersion"]:
            return 409, status(409, "Conflict", "the object has been modified; please apply your changes "
                                                "to the latest version and try again", name)
        return self._write(name, sub, lambda obj: self._take(obj, new, sub))

    def _patch(self, h, name, sub, query):
        patch = self._body(h)
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == "application/json-patch+json":
            def apply(obj):
                self._take(obj, json_patch(json.loads(json.dumps(obj)), patch), sub)
        elif ctype in ("application/merge-patch+json", "application/apply-patch+yaml"):
            def apply(obj):
                self._take(obj, merge_patch(obj, patch), sub)
        else:
            return 415, status(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                                                            f"format - accepted media types include: "
                                                            f"application/json-patch+json, "
                                                            f"application/merge-patch+json, "
                                                            f"application/apply-patch+yaml")
        return self._write(name, sub, apply)

    @staticmethod
    def _take(obj, new, sub):
        """What a write changes: the status subresource only status, the main resource
        everything but status (the CRD has a status subresource)."""
        if sub == "status":
            obj["status"] = new.get("status")
            return
        for k in list(obj):
            if k not in ("status", "metadata"):
                obj.pop(k)
        for k, v in new.items():
            if k not in ("status", "metadata"):
                obj[k] = v
        meta = new.get("metadata") or {}
        for k in ("labels", "annotations", "finalizers", "ownerReferences"):
            if k in meta:
                obj["metadata"][k] = meta[k]

    def _write(self, name, sub, mutate):
        if self.admit and sub is None:
            probe = self.store.get(name)
            if probe is not None:
                mutate(probe)
                denied = self.admit("update", probe)
                if denied:
                    return denied[0], status(denied[0], denied[1], denied[2], name)
        obj = self.store.replace(name, mutate)
        if obj is None:
            return 404, status(404, "NotFound", f'mailcredentials.mailcred.io "{name}" not found', name)
        return 200, obj

    def _delete(self, h, name, sub, query):
        opts = self._body(h) or {}
        want_uid = (opts.get("preconditions") or {}).get("uid")
        current = self.store.get(name)
        if current is not None and want_uid and current["metadata"]["uid"] != want_uid:
            return 409, status(409, "Conflict", f"Precondition failed: UID in precondition: {want_uid}, "
                                                f"UID in object meta: {current['metadata']['uid']}", name)
        obj = self.store.delete(name)
        if obj is None:
            return 404, status(404, "NotFound", f'mailcredentials.mailcred.io "{name}" not found', name)
        return 200, obj

    def _watch(self, h, name, sub, query):
        from .apiwatch import serve_watch
        serve_watch(self, h, query, parse_label_selector(query.get("labelSelector")),
                    parse_field_selector(query.get("fieldSelector")))
        return None, None


__all__ = ["StoreApiServer", "label_match", "field_match"]
