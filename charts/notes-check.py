#!/usr/bin/env python3
"""The `kubectl mailcred seal` command NOTES.txt shows uses only flags the plugin has.

Usage: notes-check.py NOTES_TEXT_FILE   (flags read from kubectl-mailcred/src/cli.rs)
"""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def plugin_flags():
    flags, pending = set(), None
    for line in (REPO / "kubectl-mailcred" / "src" / "cli.rs").read_text().splitlines():
        s = line.strip()
        if s.startswith("#[arg("):
            m = re.search(r'long\s*=\s*"([a-z0-9-]+)"', s)
            pending = m.group(1) if m else ("" if "long" in s else None)
            continue
        m = re.match(r"pub ([a-z0-9_]+):", s)
        if m and pending is not None:
            flags.add("--" + (pending or m.group(1).replace("_", "-")))
            pending = None
    return flags


def main():
    notes = Path(sys.argv[1]).read_text()
    command = re.search(r"kubectl mailcred seal(.*?)(?:\n\s*\n|kubectl apply)", notes, re.S)
    if not command:
        print("NOTES.txt shows no `kubectl mailcred seal` command", file=sys.stderr)
        return 1
    used = set(re.findall(r"(--[a-z][a-z0-9-]*)", command.group(1)))
    known = plugin_flags()
    # --password exists only to refuse a password on the command line.
    unknown = sorted((used - known) | (used & {"--password"}))
    for flag in unknown:
        print(f"NOTES.txt uses {flag}, which kubectl-mailcred seal does not have (or refuses)", file=sys.stderr)
    print(f"{len(used)} flags checked: {' '.join(sorted(used))}")
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main())
