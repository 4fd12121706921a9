#!/usr/bin/env python3
"""The pod model in a real container runtime (issue #15): a podman pod with the application
container and the sidecar container exactly as the operator's webhook injects it.

1. A MailCredential is sealed with the AWS provider against moto (kubectl mailcred seal).
2. The operator's admission code answers a CREATE review of the test Pod (the `admit` example
   of the operator crate: the real webhook, no cluster); its JSON patch is applied.
3. The injected sidecar container (image, args, env, user, read-only root, dropped
   capabilities, probes, the API token volume) is translated into podman flags (podspec.py)
   and run in a `podman pod create --network host` pod; the sidecar reads its credential from
   a loopback stand-in of the Kubernetes API (mailcred_e2e.apiserver) with the projected token.
4. The application container (e2e/kind/app.py, the kind suite's app) sends and reads mail with
   no password through the sidecar; the peers are postfix, dovecot and moto on loopback.

Prints PASS/FAIL per check, the timings, and "N passed, M failed"; exit status 1 on failure.
"""
import argparse
import base64
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parents[1] / "e2e" / "lib"))
sys.path.insert(0, str(here))
import podspec  # noqa: E402
from mailcred_e2e import PLUGIN  # noqa: E402
from mailcred_e2e import peers as peerlib  # noqa: E402
from mailcred_e2e.apiserver import ApiServer  # noqa: E402
from mailcred_e2e.checks import Checks  # noqa: E402
from mailcred_e2e.sealing import imap_endpoint, seal, smtp_endpoint  # noqa: E402
from mailcred_e2e.wait import http_get, wait_until  # noqa: E402

NAMESPACE, CREDENTIAL, SERVICE_ACCOUNT = "mail", "pod-mail", "mailer"
SIDECAR = "mailcred-sidecar"


def podman(*args, check=True, timeout=120):
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])}... failed: {r.stderr.strip()}")
    return r


def free_ports(n):
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_pod(name, peers, app_image, token):
    """The Pod as a Deployment would submit it: annotated, no mail credential anywhere."""
    locked = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
              "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
              "capabilities": {"drop": ["ALL"]}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "annotations": {"mailcred.io/inject": CREDENTIAL}},
            "spec": {"serviceAccountName": SERVICE_ACCOUNT, "containers": [{
                "name": "app", "image": app_image, "command": ["python3", "/app/app.py"],
                "env": [{"name": "E2E_TOKEN", "value": token},
                        {"name": "E2E_USER", "value": peers["PEERS_USER"]},
                        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                "securityContext": locked}]}}


def proc_status(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return fields


def root_mount_options(pid):
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        parts = line.split()
        if parts[4] == "/":
            return parts[5].split(",")
    return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--sidecar-image", required=True)
    ap.add_argument("--app-image", required=True)
    ap.add_argument("--admit", required=True, help="the operator's admit example binary")
    ap.add_argument("--api-pki", type=Path, required=True, help="ca.pem server.pem server.key")
    ap.add_argument("--plugin", default=str(PLUGIN))
    args = ap.parse_args()
    peers, c, times = peerlib.from_environment(), Checks(), {}
    work = args.work
    password = peers["PEERS_PASSWORD"]

    t = time.monotonic()
    arn = peerlib.create_kms_key(peers, "mailcred pod test")
    cred_yaml = work / "credential.yaml"
    c.record(seal(cred_yaml, user=peers["PEERS_USER"], password=password, kms=f"aws:{arn}",
                  ca_file=peers["PEERS_CA_PEM"], smtp=smtp_endpoint(peers), imap=imap_endpoint(peers),
                  namespace=NAMESPACE, name=CREDENTIAL, service_account=SERVICE_ACCOUNT,
                  allowed_recipient=peers["PEERS_USER"], env=peerlib.aws_env(peers), plugin=args.plugin))
    times["seal (aws, moto)"] = time.monotonic() - t

    # The webhook's own answer. The sidecar's env for moto is what a chart user gives as
    # sidecar.extraEnv (the kind suite does the same); listen ports are free ones, not the
    # defaults, so that parallel runs on this host (network host) do not clash.
    pod_name = f"mail-app-{secrets.token_hex(3)}"
    token = f"pod-{secrets.token_hex(6)}"
    (work / "pod.json").write_text(json.dumps(test_pod(pod_name, peers, args.app_image, token)))
    smtp_port, imap_port, admin_port = free_ports(3)
    flags = ["--sidecar-image", args.sidecar_image, "--sidecar-image-pull-policy", "Never",
             "--sidecar-smtp-addr", f"127.0.0.1:{smtp_port}", "--sidecar-imap-addr", f"127.0.0.1:{imap_port}",
             "--sidecar-admin-addr", f"127.0.0.1:{admin_port}", "--sidecar-env", "AWS_EC2_METADATA_DISABLED=true"]
    for k in peerlib.AWS_KEYS:
        if k != "AWS_DEFAULT_REGION":
            flags += ["--sidecar-env", f"{k}={peers[k]}"]
    t = time.monotonic()
    r = subprocess.run([args.admit, str(work / "pod.json"), str(cred_yaml), *flags],
                       capture_output=True, text=True, timeout=60)
    times["admission review"] = time.monotonic() - t
    if not c.check("the webhook admitted and patched the pod", r.returncode == 0, r.stderr[-2000:]):
        return c
    pod = json.loads(r.stdout)
    (work / "pod-admitted.json").write_text(json.dumps(pod, indent=2))
    inits = pod["spec"].get("initContainers", [])
    sidecar = next((x for x in inits if x["name"] == SIDECAR), None)
    c.check("the sidecar is a native sidecar (init container, restartPolicy Always)",
            sidecar is not None and sidecar.get("restartPolicy") == "Always")
    app = pod["spec"]["containers"][0]
    if sidecar is None:
        return c

    import yaml  # from the venv (moto's dependency)
    credential = yaml.safe_load(cred_yaml.read_text())
    pki = args.api_pki
    api_token = secrets.token_hex(24)
    volumes = {}
    for v in pod["spec"].get("volumes", []):
        if any(m["name"] == v["name"] for m in sidecar.get("volumeMounts", [])):
            d = work / f"volume-{v['name']}"
            d.mkdir(mode=0o755)
            for rel, content in podspec.projected_volume(v, pod, api_token, (pki / "ca.pem").read_text()).items():
                (d / rel).write_text(content)
                (d / rel).chmod(0o644)
            volumes[v["name"]] = str(d)
    c.check("the app container gets no ServiceAccount token volume",
            not any("serviceaccount" in m["mountPath"] for m in app.get("volumeMounts", [])), app.get("volumeMounts"))

    with ApiServer(credential, api_token, pki / "server.pem", pki / "server.key") as api:
        # What the kubelet puts into every container's env.
        kubelet_env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
        try:
            run_pod(c, times, work, pod, sidecar, app, volumes, kubelet_env, peers, token, admin_port, api)
        finally:
            podman("pod", "rm", "-f", pod_name, check=False)
    outputs = [(work / f).read_text() for f in ("pod-admitted.json", "sidecar.log", "app.log", "inspect.json")
               if (work / f).exists()]
    secrets_ = [password, base64.b64encode(password.encode()).decode()]
    c.check("no password in the pod spec, container configs, logs or app output",
            not any(s in out for out in outputs + c.outputs for s in secrets_))
    print("timings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in times.items()))
    return c


def run_pod(c, times, work, pod, sidecar, app, volumes, kubelet_env, peers, token, admin_port, api):
    name = pod["metadata"]["name"]
    podman("pod", "create", "--network", "host", "--name", name)
    flags, env, image, argv = podspec.run_flags(sidecar, pod, volumes, kubelet_env)
    (work / "sidecar-podman-flags.json").write_text(json.dumps(flags + [image, *argv], indent=1))
    t = time.monotonic()
    ctr = podman("run", "-d", "--pod", name, *flags, image, *argv).stdout.strip()
    ready = wait_until(lambda: http_get(f"http://127.0.0.1:{admin_port}/readyz", timeout=1)[0] == 200, 60, step=0.005)
    times["podman run -> /readyz 200"] = time.monotonic() - t
    save_logs(work, ctr)
    if not c.check("the sidecar container became ready", ready, (work / "sidecar.log").read_text()[-3000:]):
        return
    startup = podspec.probe_command(sidecar["startupProbe"])
    r = podman("exec", ctr, *startup, check=False)
    c.check("the startup probe command passes in the container", r.returncode == 0, r.stdout + r.stderr)
    r = podman("healthcheck", "run", ctr, check=False)
    c.check("podman healthcheck run (the readiness probe) says healthy", r.returncode == 0, r.stdout + r.stderr)

    inspect = podman("inspect", ctr).stdout
    (work / "inspect.json").write_text(inspect)
    info = json.loads(inspect)[0]
    pid = info["State"]["Pid"]
    st = proc_status(pid)
    c.check("sidecar runs as uid/gid 65532", st["Uid"] == ["65532"] * 4 and st["Gid"] == ["65532"] * 4,
            f"{st['Uid']} {st['Gid']}")
    c.check("sidecar has no capability (effective, permitted, bounding, ambient)",
            all(int(st[k][0], 16) == 0 for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")),
            str({k: st[k] for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")}))
    c.check("sidecar has no_new_privs and a seccomp filter", st["NoNewPrivs"] == ["1"] and st["Seccomp"] == ["2"],
            f"{st['NoNewPrivs']} {st['Seccomp']}")
    c.check("sidecar's root filesystem is mounted read-only", "ro" in root_mount_options(pid),
            root_mount_options(pid))
    writable = [m["Destination"] for m in info.get("Mounts", []) if m.get("RW")]
    c.check("no writable mount in the sidecar container", writable == [], writable)

    app_flags, _, app_image, app_argv = podspec.run_flags(app, pod, {}, kubelet_env)
    t = time.monotonic()
    r = podman("run", "--rm", "--pod", name, *app_flags, app_image, *app_argv, check=False, timeout=180)
    times["app container run"] = time.monotonic() - t
    (work / "app.log").write_text(r.stdout + r.stderr)
    for line in r.stdout.splitlines():
        if line.startswith(("PASS ", "FAIL ")):
            c.check("app: " + line[5:], line.startswith("PASS "))
    c.check("the app container passed (exit 0)", r.returncode == 0, (r.stdout + r.stderr)[-2000:])
    c.check("the message is in the mailbox (read directly from dovecot)",
            wait_until(lambda: peerlib.delivered(peers, peers["PEERS_USER"], peers["PEERS_PASSWORD"], token), 30))
    rss = int(proc_status(pid)["VmRSS"][0])
    print(f"sidecar container VmRSS after the app's run: {rss / 1024:.1f} MiB")
    # podman itself creates the mount points (the token volume's path, /etc/hosts & co.) in the
    # container's layer before it is made read-only; anything else would be a write.
    runtime_made = {"/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run", "/run/.containerenv"}
    for m in info.get("Mounts", []):
        p = Path(m["Destination"])
        runtime_made |= {str(p), *(str(a) for a in p.parents)}
    diff = [line.split(None, 1) for line in podman("diff", ctr, check=False).stdout.splitlines() if line.strip()]
    written = [f"{kind} {path}" for kind, path in diff if path not in runtime_made]
    c.check("nothing was written to the sidecar's filesystem (podman diff: only podman's mount points)",
            written == [], written)
    asked = {(q["path"], q["authorized"]) for q in api.requests}
    c.check("the sidecar read its MailCredential from the API with the projected token only",
            asked and all(ok for _, ok in asked) and all(p.endswith("/mailcredentials") or p.endswith(f"/{CREDENTIAL}") for p, _ in asked),
            asked)
    save_logs(work, ctr)


def save_logs(work, ctr):
    r = podman("logs", ctr, check=False)
    (work / "sidecar.log").write_text(r.stdout + r.stderr)


if __name__ == "__main__":
    checks = main()
    print(checks.summary())
    sys.exit(checks.exit_status())
