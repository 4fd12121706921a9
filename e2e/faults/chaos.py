"""Fault injectors of the fault suite: small threaded proxies and servers placed between the
sidecar and the real peers. Each counts what it saw, so a check can prove the fault was hit.

- TcpChaos: TCP proxy (TLS passes through untouched). Modes: pass, delay (each chunk held
  N s), reset (after N bytes in one direction since the mode was set: RST both sides).
- KmsChaos: HTTP proxy in front of moto that reads whole requests. Modes: pass, delay (every
  response held N s), http500 (a KMSInternalException body). Counts requests per
  X-Amz-Target (Decrypt is `TrentService.Decrypt`).
- TlsRecorder: implicit-TLS server with a switchable certificate; on a completed handshake it
  greets with a refusal and records only the command verbs it is sent (never arguments).
- FakeKubeApi: the few Kubernetes API calls the sidecar's API source makes (get, list, watch
  of one MailCredential), with a DELETED event on demand.
"""
import http.client
import json
import select
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _rst(sock):
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class TcpChaos:
    """A TCP proxy 127.0.0.1:port -> target; one thread per connection (select on both sides)."""

    def __init__(self, name, target_port, target_host="127.0.0.1"):
        self.name = name
        self.target = (target_host, target_port)
        self.lock = threading.Lock()
        self.mode = {"mode": "pass"}
        self.armed = 0  # bytes seen in the reset direction since the mode was set
        self.connections = 0
        self.bytes = Counter()  # "c2s" / "s2c"
        self.resets = 0
        self.closed = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name=f"chaos-{name}").start()

    def set(self, mode, **kw):
        with self.lock:
            self.mode = {"mode": mode, **kw}
            self.armed = 0

    def snapshot(self):
        with self.lock:
            return {"connections": self.connections, "c2s": self.bytes["c2s"],
                    "s2c": self.bytes["s2c"], "resets": self.resets}

    def close(self):
        self.closed = True
        _rst(self.listener)

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _rst(client)
                continue
            with self.lock:
                self.connections += 1
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(30)  # bounds sendall; reads are select-driven
            threading.Thread(target=self._serve, args=(client, upstream), daemon=True).start()

    def _serve(self, client, upstream):
        peer = {client: (upstream, "c2s"), upstream: (client, "s2c")}
        open_reads = {client, upstream}
        try:
            while open_reads and not self.closed:
                ready, _, _ = select.select(list(open_reads), [], [], 0.5)
                for src in ready:
                    dst, direction = peer[src]
                    data = src.recv(65536)
                    if not data:
                        open_reads.discard(src)
                        try:
                            dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    with self.lock:
                        mode = dict(self.mode)
                        cut = None
                        if mode["mode"] == "reset" and mode["direction"] == direction:
                            room = mode["after"] - self.armed
                            if len(data) > room:
                                cut = max(room, 0)
                                self.resets += 1
                            self.armed += len(data)
                    if cut is not None:
                        if cut:
                            dst.sendall(data[:cut])
                            with self.lock:
                                self.bytes[direction] += cut
                        _rst(client)
                        _rst(upstream)
                        return
                    if mode["mode"] == "delay":
                        time.sleep(mode["seconds"])
                    dst.sendall(data)
                    with self.lock:
                        self.bytes[direction] += len(data)
        except OSError:
            pass
        _rst(client)
        _rst(upstream)


class KmsChaos:
    """HTTP/1.1 keep-alive proxy in front of moto; one request at a time per connection."""

    def __init__(self, target_url):
        parsed = urllib.parse.urlparse(target_url)
        self.target = (parsed.hostname, parsed.port)
        self.lock = threading.Lock()
        self.mode = ("pass", 0)
        self.targets = Counter()  # X-Amz-Target -> requests
        self.statuses = Counter()
        chaos = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with chaos.lock:
                    chaos.targets[self.headers.get("X-Amz-Target", "")] += 1
                    mode, arg = chaos.mode
                if mode == "delay":
                    time.sleep(arg)
                try:
                    if mode == "http500":
                        status = 500
                        out = json.dumps({"__type": "KMSInternalException",
                                          "message": "injected by the mailcred fault suite"}).encode()
                        headers = [("Content-Type", "application/x-amz-json-1.1"),
                                   ("x-amzn-RequestId", "fault-suite")]
                    else:
                        status, headers, out = chaos.forward(self.command, self.path, self.headers, body)
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                    with chaos.lock:
                        chaos.statuses[status] += 1
                except OSError:
                    # The client gave up (its own timeout): nothing to answer.
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="chaos-kms").start()

    def forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection(*self.target, timeout=30)
        try:
            hop = {"connection", "keep-alive", "transfer-encoding", "content-length"}
            conn.request(method, path, body, {k: v for k, v in headers.items() if k.lower() not in hop})
            r = conn.getresponse()
            out = r.read()
            keep = [(k, v) for k, v in r.getheaders()
                    if k.lower() in ("content-type", "x-amzn-requestid", "x-amz-crc32")]
            return r.status, keep, out
        finally:
            conn.close()

    def set(self, mode, arg=0):
        with self.lock:
            self.mode = (mode, arg)

    def decrypts(self):
        with self.lock:
            return self.targets["TrentService.Decrypt"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


KNOWN_VERBS = {v.encode() for v in (
    "EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "QUIT", "NOOP", "RSET",
    "LOGIN", "AUTHENTICATE", "CAPABILITY", "LOGOUT", "ID", "SELECT", "EXAMINE")}


class TlsRecorder:
    """Implicit-TLS server: handshake with the current certificate; if it completes, send
    `greeting`, read what the client says for a moment and keep only each line's verb."""

    def __init__(self, greeting):
        self.greeting = greeting
        self.lock = threading.Lock()
        self.context = None
        self.accepted = 0
        self.handshakes = 0
        self.handshake_errors = []
        self.verbs = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="tls-recorder").start()

    def use(self, certfile, keyfile):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        with self.lock:
            self.context = ctx

    def settled(self):
        """True once every accepted connection's handshake has ended, completed or failed:
        the server thread records the outcome after the client may already have acted on it."""
        with self.lock:
            return self.handshakes + len(self.handshake_errors) >= self.accepted

    def close(self):
        _rst(self.listener)

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with self.lock:
            self.accepted += 1
            ctx = self.context
        conn.settimeout(10)
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.handshake_errors.append(str(e))
            conn.close()
            return
        with self.lock:
            self.handshakes += 1
        try:
            tls.sendall(self.greeting)
            tls.settimeout(2)
            buf = b""
            while len(buf) < 65536:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    # Only known verbs are kept: an AUTH continuation line is the secret.
                    words = [w.upper() for w in line.split()[:2]]
                    verb = next((w.decode() for w in words if w in KNOWN_VERBS), "?")
                    with self.lock:
                        self.verbs.append(verb)
        except (ssl.SSLError, OSError):
            pass
        finally:
            tls.close()


class FakeKubeApi:
    """GET, list and watch of one namespaced MailCredential, as kube-rs' Api + watcher ask."""

    def __init__(self, namespace, name, obj):
        self.base = f"/apis/mailcred.io/v1alpha1/namespaces/{namespace}/mailcredentials"
        self.name = name
        self.obj = obj
        self.lock = threading.Condition()
        self.deleted = False
        self.stopping = False
        self.requests = []  # (method, path, watch?)
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status, value):
                body = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query)
                watch = query.get("watch", ["false"])[0] in ("true", "1")
                with api.lock:
                    api.requests.append(("GET", url.path, watch))
                    deleted = api.deleted
                if url.path == f"{api.base}/{api.name}":
                    if deleted:
                        return self._json(404, api.status(404, "NotFound", f'mailcredentials "{api.name}" not found'))
                    return self._json(200, api.obj)
                if url.path != api.base:
                    return self._json(404, api.status(404, "NotFound", "the server could not find the requested resource"))
                if not watch:
                    items = [] if deleted else [api.obj]
                    return self._json(200, {"apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredentialList",
                                            "metadata": {"resourceVersion": api.obj["metadata"]["resourceVersion"]},
                                            "items": items})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                timeout = min(float(query.get("timeoutSeconds", ["290"])[0]), 120.0)
                deadline = time.time() + timeout
                with api.lock:
                    was_deleted = api.deleted
                    while not api.stopping and time.time() < deadline and api.deleted == was_deleted:
                        api.lock.wait(0.5)
                    send_delete = api.deleted and not was_deleted
                try:
                    if send_delete:
                        gone = json.loads(json.dumps(api.obj))
                        gone["metadata"]["resourceVersion"] = "2"
                        event = json.dumps({"type": "DELETED", "object": gone}).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                        self.wfile.flush()
                        with api.lock:
                            while not api.stopping and time.time() < deadline:
                                api.lock.wait(0.5)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-kube").start()

    @staticmethod
    def status(code, reason, message):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}

    def delete(self):
        with self.lock:
            self.deleted = True
            self.lock.notify_all()

    def watches(self):
        with self.lock:
            return sum(1 for r in self.requests if r[2])

    def close(self):
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        self.server.shutdown()
        self.server.server_close()
