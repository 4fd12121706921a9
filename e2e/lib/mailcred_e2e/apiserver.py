"""The few Kubernetes API calls the sidecar makes, served over HTTPS on loopback: for running the
injected sidecar where there is no cluster. Two modes:

- ApiServer: the `--credential NAME` API source. Serves exactly one MailCredential to exactly
  one bearer token, as the operator's per-credential Role allows (get, list/watch by name);
  everything else is 401/403/404, so a sidecar asking for more than its RBAC grants fails here
  as it would in a cluster.
- StoreApiServer (mailcred_e2e.apistore): the account-set mode. Many MailCredentials of one
  namespace in a mailcred_e2e.kubestore.Store: create, get, list and watch by label and field
  selector, patch, delete, with the request and response shapes kube-rs uses.

Requests are recorded (method, path, whether the token matched) for the test to check.
`kubeconfig()` writes the file a sidecar outside a pod points KUBECONFIG at."""
import base64
import json
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

GROUP_PATH = "/apis/mailcred.io/v1alpha1"


def kubeconfig(path, port, ca_pem, token, namespace):
    """A kubeconfig for https://127.0.0.1:PORT with the test CA and a bearer token (mode 0600):
    what kube::Client::try_default() reads from KUBECONFIG outside a pod."""
    ca = Path(ca_pem).read_text()
    text = json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {
            "server": f"https://127.0.0.1:{port}",
            "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
        "users": [{"name": "e2e", "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e", "namespace": namespace}}],
    }, indent=1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class ApiServer:
    def __init__(self, credential, token, cert, key, watch_seconds=60):
        self.credential = json.loads(json.dumps(credential))
        meta = self.credential.setdefault("metadata", {})
        meta.setdefault("uid", "6c1f0e4a-97c2-4b38-9a2e-0c3d5b7e1f20")
        meta.setdefault("resourceVersion", "1")
        meta.setdefault("generation", 1)
        self.namespace, self.name = meta["namespace"], meta["name"]
        self.token, self.watch_seconds = token, watch_seconds
        self.requests = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._get(self)

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
        self.httpd.shutdown()
        self.httpd.server_close()

    def _reply(self, h, code, body):
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _status(self, h, code, reason):
        self._reply(h, code, {"apiVersion": "v1", "kind": "Status", "status": "Failure",
                              "code": code, "reason": reason, "message": reason})

    def _get(self, h):
        url = urlparse(h.path)
        query = parse_qs(url.query)
        authorized = h.headers.get("Authorization", "") == f"Bearer {self.token}"
        with self.lock:
            self.requests.append({"method": "GET", "path": url.path, "query": url.query,
                                  "authorized": authorized})
        if not authorized:
            return self._status(h, 401, "Unauthorized")
        collection = f"{GROUP_PATH}/namespaces/{self.namespace}/mailcredentials"
        if url.path == f"{collection}/{self.name}":
            return self._reply(h, 200, self.credential)
        if url.path != collection or query.get("fieldSelector") != [f"metadata.name={self.name}"]:
            return self._status(h, 403, "Forbidden")
        if query.get("watch") == ["true"] or query.get("watch") == ["1"]:
            return self._watch(h, int(query.get("timeoutSeconds", ["290"])[0]))
        self._reply(h, 200, {"apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredentialList",
                             "metadata": {"resourceVersion": self.credential["metadata"]["resourceVersion"]},
                             "items": [self.credential]})

    def _watch(self, h, timeout):
        """An open watch with no events (the credential does not change), ended by the
        client, the timeout or shutdown, as the API server ends one."""
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        deadline = time.monotonic() + min(timeout, self.watch_seconds)
        while time.monotonic() < deadline and not self.stopping.wait(0.5):
            pass
        try:
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
