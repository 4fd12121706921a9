"""Polling and the one HTTP GET the suites need (the sidecar's admin port, moto)."""
import time
import urllib.error
import urllib.request


def wait_until(pred, timeout, step=0.1):
    """True as soon as pred() is true; False after `timeout` seconds. An exception raised by
    pred counts as "not yet" (a server still starting refuses connections)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


def http_get(url, timeout=5):
    """(status, body text) of a GET."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def http_request(url, accept=None, timeout=5):
    """(status, body text, Content-Type) of a GET with an optional Accept header; an HTTP error
    status is returned, not raised."""
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), e.headers.get("Content-Type", "")
