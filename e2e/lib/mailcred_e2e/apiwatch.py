"""A watch of the fake API server's store mode, as the API server streams one: chunked JSON
lines {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}.

- resourceVersion absent or "0": synthetic ADDED events for what matches now, then changes;
- resourceVersion N: every change after N from the store's event log; older than the log
  keeps: one ERROR event with a 410 Expired Status, then the end (the watcher re-lists);
- sendInitialEvents=true (streaming list): ADDED for what matches now, then a BOOKMARK with
  the annotation k8s.io/initial-events-end: "true";
- an object that stops matching the label selector is sent as DELETED, one that starts
  matching as ADDED, as the API server does;
- the watch ends after min(timeoutSeconds, the server's watch_seconds) or at shutdown.
"""
import json
import time

from .kubestore import field_match, label_match


def _chunk(h, event):
    data = json.dumps(event).encode() + b"\n"
    h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    h.wfile.flush()


def _bookmark(server, rv, initial_end=False):
    meta = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"type": "BOOKMARK", "object": {"apiVersion": server.store.api_version,
                                           "kind": server.store.kind, "metadata": meta}}


def serve_watch(server, h, query, labels, fields):
    store = server.store
    timeout = min(float(query.get("timeoutSeconds") or 1800), server.watch_seconds)
    bookmarks = query.get("allowWatchBookmarks") == "true"
    rv_text = query.get("resourceVersion") or "0"
    matches = lambda obj: label_match(labels, obj["metadata"].get("labels") or {}) and field_match(fields, obj)  # noqa: E731

    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    with server.lock:
        server.open_watches += 1
    try:
        with store.cond:
            current = [o for o in store.list(labels, fields)[0]]
            now_rv = store.rv
        seen = {o["metadata"]["name"] for o in current}
        if rv_text == "0" or query.get("sendInitialEvents") == "true":
            for obj in current:
                _chunk(h, {"type": "ADDED", "object": obj})
            if query.get("sendInitialEvents") == "true":
                _chunk(h, _bookmark(server, now_rv, initial_end=True))
            rv = now_rv
        else:
            rv = int(rv_text)
            if rv < store.oldest_rv:
                _chunk(h, {"type": "ERROR", "object": {
                    "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
                    "message": f"too old resource version: {rv} ({store.oldest_rv})"}})
                return
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + server.bookmark_seconds
        while not server.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with store.cond:
                events, gone = store.events_after(rv)
                if not events and not gone:
                    store.cond.wait(min(left, max(0.01, next_bookmark - time.monotonic()), 0.5))
                    events, gone = store.events_after(rv)
            if gone:
                _chunk(h, {"type": "ERROR", "object": {
                    "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
                    "message": f"too old resource version: {rv}"}})
                return
            for ev_rv, etype, obj in events:
                rv = ev_rv
                name, match = obj["metadata"]["name"], matches(obj)
                if etype == "DELETED":
                    if name in seen or match:
                        seen.discard(name)
                        _chunk(h, {"type": "DELETED", "object": obj})
                elif match:
                    _chunk(h, {"type": "MODIFIED" if name in seen else "ADDED", "object": obj})
                    seen.add(name)
                elif name in seen:
                    seen.discard(name)
                    _chunk(h, {"type": "DELETED", "object": obj})
            if bookmarks and time.monotonic() >= next_bookmark:
                _chunk(h, _bookmark(server, rv))
                next_bookmark = time.monotonic() + server.bookmark_seconds
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
    except OSError:
        h.close_connection = True  # the client went away
    finally:
        # A watch that ended normally leaves the connection open (keep-alive), as the API
        # server does: hyper reuses it at once for the next watch, and a closed one makes
        # that request fail with SendRequest.
        with server.lock:
            server.open_watches -= 1
