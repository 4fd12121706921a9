"""Looks for a password in a live process's memory (/proc/PID/maps + /proc/PID/mem; needs
root or CAP_SYS_PTRACE: the sidecar makes itself non-dumpable)."""
import base64
from pathlib import Path


def needles(user, password):
    """The plaintext, and the AUTH PLAIN / LOGIN encodings that are as good as plaintext."""
    pw = password.encode()
    return {
        "plaintext": pw,
        "auth-plain-base64": base64.b64encode(b"\0" + user.encode() + b"\0" + pw),
        "auth-login-base64": base64.b64encode(pw),
    }


def scan_memory(pid, wanted):
    """Finds each needle in the process's private writable mappings (heap, stacks, anonymous):
    ({name: ["mapping+offset", ...]}, bytes scanned)."""
    hits = {name: [] for name in wanted}
    scanned = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            perms = fields[1]
            path = fields[5] if len(fields) > 5 else "[anon]"
            if not perms.startswith("rw") or path in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue  # guard pages and the like
            scanned += len(data)
            for name, needle in wanted.items():
                at = data.find(needle)
                while at != -1:
                    hits[name].append(f"{path}+{at:#x}")
                    at = data.find(needle, at + 1)
    return hits, scanned


def holds_any(pid, wanted):
    """True while any needle is anywhere in the process's writable memory."""
    return any(scan_memory(pid, wanted)[0].values())


def locked_kib(pid):
    """VmLck of the process: what it has mlocked."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    return 0
