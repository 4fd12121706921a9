#!/usr/bin/env python3
"""Carries sidecar/symbol-order.txt over to a build whose code changed: LTO numbers the local
copies of small functions (`box_new_uninit.9558`), and any change renumbers them, so the listed
name misses the new build. A listed name the build lacks is replaced by every copy of the same
function in the build (`box_new_uninit.*`); other names the build lacks are dropped. Prints the
new list; the build's names (`nm BINARY`, last field) come on standard input.

Usage: nm BINARY | awk '{print $NF}' | symbol_refresh.py LIST > NEW_LIST   (symbol-order.sh)
"""
import re
import sys

NUMBERED = re.compile(r"^(.*)\.(\d+)$")


def refresh(listed, built):
    built_set = set(built)
    copies = {}
    for name in built:
        m = NUMBERED.match(name)
        if m:
            copies.setdefault(m.group(1), []).append(name)
    out, kept, carried, dropped = set(), 0, 0, 0
    for name in listed:
        if name in built_set:
            out.add(name)
            kept += 1
            continue
        m = NUMBERED.match(name)
        found = copies.get(m.group(1), []) if m else []
        if found:
            out.update(found)
            carried += 1
        else:
            dropped += 1
    return sorted(out), (kept, carried, dropped)


def main():
    listed = [line.strip() for line in open(sys.argv[1]) if line.strip()]
    built = [line.strip() for line in sys.stdin if line.strip()]
    names, (kept, carried, dropped) = refresh(listed, built)
    sys.stdout.write("".join(f"{n}\n" for n in names))
    print(f"symbol_refresh.py: {kept} kept, {carried} renumbered names carried over "
          f"({len(names) - kept} copies), {dropped} gone from the build", file=sys.stderr)


if __name__ == "__main__":
    main()
