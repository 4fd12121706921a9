"""Helpers shared by the Python suites and benchmarks: the peers' env file, the sidecar
launcher, sealing, mail clients, the PASS/FAIL recorder and leak scans.

Scripts import it with a sys.path insert of <repo>/e2e/lib relative to their own file (no pip
install), e.g. from e2e/local/run.py:

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "lib"))
    from mailcred_e2e import peers, sidecar
"""
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# The debug builds the suites use unless told otherwise (scripts/test.sh builds them).
PLUGIN = REPO / "target/debug/kubectl-mailcred"
SIDECAR = REPO / "target/debug/mailcred-sidecar"
