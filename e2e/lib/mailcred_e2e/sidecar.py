"""The one launcher of the real mailcred-sidecar binary for the suites and benchmarks.

Every listener is on 127.0.0.1:0: the kernel picks free ports (no race with other runs), and
the sidecar's "mailcred sidecar serving" log line says which ones it got.
"""
import json
import os
import re
import subprocess
import time

from . import SIDECAR
from .wait import http_get, http_request, wait_until

SERVING = "mailcred sidecar serving"


def file_source(credential, local_key=None):
    """Arguments for a sealed MailCredential file (and the local key that opens it, no AWS)."""
    args = ["--credential-file", str(credential)]
    if local_key:
        args += ["--local-key-file", str(local_key), "--no-aws"]
    return args


class Sidecar:
    """A running sidecar with its own log file. `source` is the credential source's
    arguments (file_source(...) or the Kubernetes API source's), `extra` any further flags."""

    def __init__(self, log_path, source, *, pod, env=None, cache_ttl=None, extra=(), binary=SIDECAR,
                 metrics_port=False):
        self.log_path = log_path
        self.smtp = self.imap = self.admin = None  # ports, known once serving
        self.metrics_port = None  # the scrapeable metrics listener's port, with metrics_port=True
        self.registration = None  # the registration API's port (account-set mode)
        args = [str(binary), *source,
                "--smtp-listen", "127.0.0.1:0", "--imap-listen", "127.0.0.1:0",
                "--admin-listen", "127.0.0.1:0", "--pod", pod]
        if metrics_port:
            # In a pod it is the pod IP; tests stay on loopback.
            args += ["--metrics-listen", "127.0.0.1:0"]
        if cache_ttl is not None:
            args += ["--cache-ttl-seconds", str(cache_ttl)]
        args += list(extra)
        env = dict(os.environ if env is None else env)
        env["AWS_EC2_METADATA_DISABLED"] = "true"  # never wait on an instance-metadata lookup
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def wait_serving(self, timeout=30):
        """True once the listeners are bound (ports read from the log); False when the process
        exited or the timeout passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._read_ports():
                return True
            if self.proc.poll() is not None:
                return self._read_ports()
            time.sleep(0.1)
        return False

    def ready(self, timeout=30):
        """Serving and /readyz says 200 (the credential source has loaded)."""
        started = time.monotonic()
        if not self.wait_serving(timeout):
            return False
        left = max(0.5, timeout - (time.monotonic() - started))
        return wait_until(lambda: http_get(f"http://127.0.0.1:{self.admin}/readyz")[0] == 200, left)

    def _read_ports(self):
        for rec in self.records():
            fields = rec.get("fields", rec)
            if fields.get("message") == SERVING or rec.get("message") == SERVING:
                port = lambda k: int(fields[k].rsplit(":", 1)[1])  # noqa: E731
                self.smtp, self.imap, self.admin = port("smtp"), port("imap"), port("admin")
                if fields.get("metrics", "off") != "off":
                    self.metrics_port = port("metrics")
                if fields.get("registration", "off") not in ("off", None, ""):
                    self.registration = port("registration")  # account-set mode's API
                return True
        return False

    def text(self):
        return self.log_path.read_text(errors="replace")

    def records(self):
        """The JSON log lines."""
        out = []
        for line in self.text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def audit(self, protocol=None):
        """Audit lines, all or those of one protocol ("smtp", or "imap": the imap_* events)."""
        lines = [r for r in self.records() if r.get("target") == "audit"]
        if protocol == "imap":
            return [r for r in lines if r.get("protocol") == "imap" or r.get("event", "").startswith("imap")]
        if protocol:
            return [r for r in lines if r.get("protocol") == protocol]
        return lines

    def metrics(self):
        return http_get(f"http://127.0.0.1:{self.admin}/metrics")[1]

    def scrape(self, path="/metrics", accept=None):
        """(status, body, content type) from the scrapeable metrics listener."""
        return http_request(f"http://127.0.0.1:{self.metrics_port}{path}", accept=accept)

    def metric(self, pattern):
        """The first group of `pattern` in /metrics as a number, None when absent."""
        m = re.search(pattern, self.metrics())
        return float(m.group(1)) if m else None

    def tail(self, n=1500):
        return self.text()[-n:].replace("\n", " | ")

    def stop(self, timeout=10):
        """SIGTERM to this sidecar's PID, SIGKILL after `timeout` s. Returns the exit status,
        None when it had to be killed. Safe to call again."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                self._log.close()
                return None
        self._log.close()
        return self.proc.returncode
