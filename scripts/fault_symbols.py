#!/usr/bin/env python3
"""Functions of BINARY whose code a process first touched, from `perf script -F addr,ip,sym,dso
--no-demangle` of a `perf record -e page-faults -d` run on standard input: one name per line.

An instruction fetch faults at the instruction itself (the fault address is the ip, or a few
bytes on when the instruction crosses a page), so those samples name a function that ran on
this CPU. scripts/symbol-order.sh adds the ones its list lacks (used by symbol-order.sh only).
"""
import sys


def main():
    binary = sys.argv[1]
    names = set()
    for line in sys.stdin:
        # addr addr-symbol (addr-dso) ip ip-symbol (ip-dso)
        fields = line.split()
        if len(fields) < 6 or fields[5] != f"({binary})":
            continue
        try:
            addr, ip = int(fields[0], 16), int(fields[3], 16)
        except ValueError:
            continue
        if 0 <= addr - ip < 16 and fields[4] != "[unknown]":
            names.add(fields[4])
    sys.stdout.write("".join(f"{n}\n" for n in sorted(names)))


if __name__ == "__main__":
    main()
