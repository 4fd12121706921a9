#!/usr/bin/env python3
"""Checks a `helm template` output of the mailcred chart for what schema validation cannot see:
names the operator's flags and the manifests must agree on, the hardening, least-privilege
RBAC, and that each value set renders what it is for.

  render-check.py split RENDERED OUT   write the built-in kinds only (for kubernetes-validate)
  render-check.py check RENDERED SET   run the checks; SET names the value set (check.sh)

When operator/src/config.rs exists, every flag the chart passes must be one of its clap flags.
When MAILCRED_OPERATOR_BIN names a built mailcred-operator, it is run with the rendered flags
(and no cluster to reach): it must get past flag parsing and validation (clap and
Config::validate exit with status 2; a missing cluster is status 1).

The checks live in charts/render_check/, one module per group.
"""

import sys

from render_check.check import check
from render_check.split import split


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "split":
        split(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        return check(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
