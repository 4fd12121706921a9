"""Where a plaintext password shows up after a run: files of the work directory and client output."""

# Files that hold the passwords on purpose: the peers' user database, env file and bulk users
# (e2e/peers/bulk_users.py), key files, and the OAuth peers' config (oidc-provider's clients
# with their secrets, peers/oauth/).
_EXPECTED = ("passwd", "users", "env", "bulk-users.tsv")
_EXPECTED_PATHS = ("oauth/config.json",)


def find_leaks(workdir, secrets, outputs):
    """Sorted places (file paths, "client output") that contain any of `secrets`."""
    leaks = set()
    for path in workdir.rglob("*"):
        expected = path.name in _EXPECTED or any(path.as_posix().endswith("/" + p) for p in _EXPECTED_PATHS)
        if path.is_file() and not expected and path.suffix != ".key":
            data = path.read_bytes()
            if any(s.encode() in data for s in secrets):
                leaks.add(str(path))
    if any(s in out for out in outputs for s in secrets):
        leaks.add("client output")
    return sorted(leaks)
