"""The PASS/FAIL check recorder: one line per check, and a closing line "N passed, M failed"."""


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.outputs = []  # every client output, scanned for passwords at the end

    def check(self, name, ok, detail=""):
        """Records and prints one check; returns ok, so a failed precondition can end a scenario."""
        if ok:
            self.passed += 1
            print(f"PASS {name}")
        else:
            self.failed += 1
            print(f"FAIL {name} {detail}".rstrip())
        return ok

    def record(self, text):
        """Keeps what a client saw for the leak scan; returns it unchanged."""
        self.outputs.append(text if isinstance(text, str) else repr(text))
        return text

    def summary(self):
        return f"{self.passed} passed, {self.failed} failed"

    def exit_status(self):
        return 0 if self.failed == 0 else 1
