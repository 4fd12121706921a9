"""What every group of checks uses: the repository, the release namespace, the failure list,
and the rendered documents by kind."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "mailcred-system"


class Failures:
    def __init__(self):
        self.items = []

    def expect(self, cond, message):
        if not cond:
            self.items.append(message)
        return cond


def load(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


class Rendered:
    """The documents of one value set by kind, and the failures the checks find in them."""

    def __init__(self, docs, f, set_name):
        self.f = f
        self.set_name = set_name
        self.docs = docs
        self.by_kind = {}
        for d in docs:
            self.by_kind.setdefault(d["kind"], []).append(d)

    def one(self, kind):
        items = self.by_kind.get(kind, [])
        self.f.expect(len(items) == 1, f"expected exactly one {kind}, found {len(items)}")
        return items[0] if items else {}

    def named(self, kind, name):
        for d in self.by_kind.get(kind, []):
            if d["metadata"]["name"] == name:
                return d
        self.f.expect(False, f"no {kind} named {name!r}")
        return {}
