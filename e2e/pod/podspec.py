"""A container of a Pod spec as `podman run` flags: what the kubelet would do with it, for the
fields the mailcred webhook sets. A field this does not know is an error, not ignored: a new
setting in the injected spec must be translated (or consciously skipped here) before the pod
test passes again."""
import json
import re

# Fields of a container that are translated below, or that podman has no use for.
KNOWN_CONTAINER = {"name", "image", "imagePullPolicy", "command", "args", "env", "securityContext",
                   "resources", "readinessProbe", "startupProbe", "livenessProbe", "restartPolicy",
                   "volumeMounts", "ports"}
KNOWN_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "readOnlyRootFilesystem",
                  "allowPrivilegeEscalation", "privileged", "capabilities", "seccompProfile"}


class Unsupported(ValueError):
    pass


def expand(value, env):
    """The kubelet's $(VAR) expansion in args and env: a defined VAR is replaced, $$ escapes,
    anything else stays as written."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def env_values(container, pod):
    """The container's env as the kubelet resolves it (downward API fields of this pod)."""
    fields = {"metadata.name": pod["metadata"].get("name", ""),
              "metadata.namespace": pod["metadata"]["namespace"],
              "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default")}
    out = {}
    for e in container.get("env", []):
        if "value" in e:
            out[e["name"]] = expand(e["value"], out)
        elif "valueFrom" in e and set(e["valueFrom"]) == {"fieldRef"}:
            path = e["valueFrom"]["fieldRef"]["fieldPath"]
            if path not in fields:
                raise Unsupported(f"env {e['name']}: fieldRef {path}")
            out[e["name"]] = fields[path]
        else:
            raise Unsupported(f"env {e['name']}: {e}")
    return out


def probe_command(probe):
    if set(probe.get("exec", {})) != {"command"} or set(probe) - {"exec", "periodSeconds",
                                                                     "timeoutSeconds", "failureThreshold",
                                                                     "successThreshold", "initialDelaySeconds"}:
        raise Unsupported(f"probe {probe}: only exec probes are translated")
    return probe["exec"]["command"]


def security_flags(sc):
    unknown = set(sc) - KNOWN_SECURITY
    if unknown:
        raise Unsupported(f"securityContext fields {sorted(unknown)}")
    flags = []
    user, group = sc.get("runAsUser"), sc.get("runAsGroup")
    if sc.get("runAsNonRoot") and not user:
        raise Unsupported("runAsNonRoot without a numeric runAsUser: the image's USER would decide")
    if user is not None:
        flags += ["--user", f"{user}:{group if group is not None else user}"]
    if sc.get("readOnlyRootFilesystem"):
        # No tmpfs on /tmp, /run, /var/tmp either (podman adds them by default): a kubelet
        # does not, so neither may the test.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    if sc.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if sc.get("privileged"):
        flags += ["--privileged"]
    caps = sc.get("capabilities", {})
    for cap in caps.get("drop", []):
        flags += ["--cap-drop", cap.lower()]
    for cap in caps.get("add", []) or []:
        flags += ["--cap-add", cap.lower()]
    seccomp = sc.get("seccompProfile", {}).get("type")
    if seccomp not in (None, "RuntimeDefault"):
        raise Unsupported(f"seccompProfile {seccomp}")
    # RuntimeDefault: podman's default seccomp profile, applied unless told otherwise.
    return flags


def memory_flag(resources):
    limit = resources.get("limits", {}).get("memory")
    if not limit:
        return []
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", limit)
    if not m:
        raise Unsupported(f"memory limit {limit}")
    scale = {None: 1, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3}[m.group(2)]
    return ["--memory", str(int(m.group(1)) * scale)]


def run_flags(container, pod, volumes, extra_env):
    """(podman run flags, resolved env, image, args) for `container`. `volumes`: name -> host
    directory the volume's contents were written to. `extra_env`: what the kubelet adds to
    every container (KUBERNETES_SERVICE_HOST/PORT)."""
    unknown = set(container) - KNOWN_CONTAINER
    if unknown:
        raise Unsupported(f"container fields {sorted(unknown)}")
    if container.get("ports"):
        raise Unsupported("container ports")
    env = dict(extra_env)
    env.update(env_values(container, pod))
    flags = ["--name", f"{pod['metadata']['name']}-{container['name']}", "--pull", "never"]
    for k, v in env.items():
        flags += ["--env", f"{k}={v}"]
    flags += security_flags(container.get("securityContext", {}))
    flags += memory_flag(container.get("resources", {}))
    for m in container.get("volumeMounts", []):
        if set(m) - {"name", "mountPath", "readOnly"}:
            raise Unsupported(f"volumeMount {m}")
        ro = ":ro" if m.get("readOnly") else ""
        flags += ["--volume", f"{volumes[m['name']]}:{m['mountPath']}{ro}"]
    readiness = container.get("readinessProbe")
    if readiness:
        # No timer (there is no systemd here): the test runs the check at the probe's period
        # with `podman healthcheck run`, as the kubelet would.
        # A JSON array: exec form (the string form would need a /bin/sh the image lacks).
        flags += ["--health-cmd", json.dumps(probe_command(readiness)),
                  "--health-interval", "disable",
                  "--health-timeout", f"{readiness.get('timeoutSeconds', 1)}s",
                  "--health-retries", str(readiness.get("failureThreshold", 3))]
    args = [expand(a, env) for a in container.get("args", [])]
    command = container.get("command")
    if command:
        flags += ["--entrypoint", json.dumps([expand(c, env) for c in command])]
    return flags, env, container["image"], args


def projected_volume(volume, pod, token, ca_pem):
    """{relative path: content} of a projected volume of the sources the webhook uses for the
    sidecar's API token (serviceAccountToken, the cluster CA ConfigMap, the namespace)."""
    if set(volume) != {"name", "projected"}:
        raise Unsupported(f"volume {volume}")
    files = {}
    for source in volume["projected"]["sources"]:
        if "serviceAccountToken" in source:
            files[source["serviceAccountToken"]["path"]] = token
        elif "configMap" in source and source["configMap"]["name"] == "kube-root-ca.crt":
            for item in source["configMap"]["items"]:
                files[item["path"]] = ca_pem
        elif "downwardAPI" in source:
            for item in source["downwardAPI"]["items"]:
                if item["fieldRef"]["fieldPath"] != "metadata.namespace":
                    raise Unsupported(f"downwardAPI {item}")
                files[item["path"]] = pod["metadata"]["namespace"]
        else:
            raise Unsupported(f"projected source {source}")
    return files
