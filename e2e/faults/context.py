"""What the fault scenarios share: the run's context (peers, KMS key, cleanups) and short
forms of the e2e/lib helpers bound to it, so a scenario reads as its steps."""
import uuid

from mailcred_e2e import peers as peerlib
from mailcred_e2e import mail, sealing
from mailcred_e2e.sidecar import Sidecar
from mailcred_e2e.wait import wait_until

# The sidecar's bound on one KMS call (core/src/kms/aws.rs, AwsKmsOptions::default).
KMS_BOUND_S = 10


class Context:
    def __init__(self, suite, workdir, peers, kms_flag):
        self.suite = suite
        self.workdir = workdir
        self.peers = peers
        self.kms_flag = kms_flag
        self.user = peers["PEERS_USER"]
        self.password = peers["PEERS_PASSWORD"]
        self.secrets = [peers["PEERS_PASSWORD"], peers["PEERS_ROTATE_PASSWORD"]]
        self.cleanups = []

    def aws_env(self, kms_endpoint=None):
        return peerlib.aws_env(self.peers, kms_endpoint)

    def later(self, fn):
        self.cleanups.append(fn)
        return fn

    def run_cleanups(self):
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except Exception as e:  # cleanup must not hide the scenario's result
                print(f"  (cleanup: {e!r})")


def seal(ctx, out, *, user=None, password=None, smtp=None, imap=None, ca_file=None):
    """kubectl-mailcred seal to `out` (atomically). smtp/imap: (host, port, tls-mode)."""
    ctx.suite.record(sealing.seal(
        out, user=user or ctx.user, password=password or ctx.password, kms=ctx.kms_flag,
        ca_file=ca_file or ctx.peers["PEERS_CA_PEM"], smtp=smtp, imap=imap, namespace="e2e",
        max_recipients=3, max_message_bytes=2 * 1024 * 1024, env=ctx.aws_env()))
    return out


def start_sidecar(ctx, tag, source, env, ttl, extra=()):
    """The real sidecar binary with its own log file; stopped by the scenario's cleanups."""
    sc = Sidecar(ctx.workdir / f"{tag}-sidecar.log", source, pod="e2e-faults-0", env=env, cache_ttl=ttl,
                 extra=["--upstream-timeout", "10", "--shutdown-grace", "2", *extra])
    ctx.later(sc.stop)
    return sc


def send(suite, port, sender, to, subject, body=mail.BODY, timeout=60):
    """One message on a new connection: (code, text, seconds); -1 for a disconnect."""
    return mail.smtp_send(port, sender, to, subject, body=body, timeout=timeout, record=suite.record)


def send_on(suite, conn, sender, to, subject, body=mail.BODY):
    return mail.smtp_send_on(conn, sender, to, subject, body=body, record=suite.record)


def imap_login(suite, port):
    """LOGIN through the sidecar: (ok, detail, connection or None)."""
    return mail.imap_login(port, record=suite.record)


def not_delivered(ctx, subject, seconds=3.0, user=None, password=None):
    """True when the message has not landed after `seconds` (delivery is asynchronous)."""
    return not wait_until(lambda: peerlib.delivered(ctx.peers, user or ctx.user, password or ctx.password,
                                                    subject), seconds, step=0.5)


def is_delivered(ctx, subject, user=None, password=None):
    return wait_until(lambda: peerlib.delivered(ctx.peers, user or ctx.user, password or ctx.password,
                                                subject), 15)


def subject(tag):
    return f"faults-{tag}-{uuid.uuid4().hex[:8]}"


def last_temporary_failure(sidecar):
    fails = [a for a in sidecar.audit("smtp") if a.get("outcome") == "temporary_failure"]
    return fails[-1] if fails else {}
