"""The operator's flags: every flag the chart renders is one of operator/src/config.rs's clap
flags, and a built mailcred-operator (MAILCRED_OPERATOR_BIN) gets past parsing them."""

import os
import re
import subprocess

from .common import REPO

# Flags the chart renders only when their values are set and that the operator does not have
# yet (reported as WARN, not failed, until it does; see the chart README).
PENDING_OPERATOR_FLAGS = {
    "--sidecar-cache-ttl-seconds",
    "--sidecar-trusted-kms-endpoint",
    "--sidecar-env",
}


def operator_flags():
    """Long flags of mailcred-operator's clap structs, or None when the source is absent."""
    src = REPO / "operator" / "src" / "config.rs"
    if not src.exists():
        return None
    flags, pending_long = set(), None
    for line in src.read_text().splitlines():
        s = line.strip()
        if s.startswith("#[arg(") or s.startswith("#[command("):
            m = re.search(r'long\s*=\s*"([a-z0-9-]+)"', s)
            pending_long = m.group(1) if m else ("" if "long" in s else None)
            continue
        m = re.match(r"pub ([a-z0-9_]+):", s)
        if m and pending_long is not None:
            flags.add("--" + (pending_long or m.group(1).replace("_", "-")))
            pending_long = None
    return flags


def check_operator_flags(rendered, pod):
    """Returns the WARN lines (flags the operator has not got yet, PENDING_OPERATOR_FLAGS)."""
    f, flags, c = rendered.f, pod.flags, pod.c
    # Flags must exist in the operator (when its source is here).
    known = operator_flags()
    warnings = []
    if known is not None:
        for name in sorted(flags):
            if name not in known:
                if name in PENDING_OPERATOR_FLAGS:
                    warnings.append(f"WARN operator has no {name} yet (rendered for this value set)")
                else:
                    f.expect(False, f"mailcred-operator has no flag {name} (operator/src/config.rs)")
    binary = os.environ.get("MAILCRED_OPERATOR_BIN")
    if binary:
        argv = [a for a in c.get("args", []) if a.split("=", 1)[0] not in PENDING_OPERATOR_FLAGS or (known is not None and a.split("=", 1)[0] in known)]
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
        env["HOME"] = "/nonexistent"
        for name in ("POD_NAMESPACE", "POD_NAME"):
            env[name] = "mailcred-system" if name == "POD_NAMESPACE" else "mailcred-operator-0"
        try:
            run = subprocess.run([binary, *argv], env=env, capture_output=True, text=True, timeout=20)
            f.expect(run.returncode == 1 and "invalid flags" not in run.stderr + run.stdout,
                     f"{binary} refused the rendered flags (exit {run.returncode}): {(run.stderr or run.stdout).strip()[-600:]}")
        except subprocess.TimeoutExpired:
            f.expect(False, f"{binary} did not exit within 20 s without a cluster")
    return warnings
