"""The object store behind the fake API server's store mode (mailcred_e2e.apiserver): many
MailCredentials of one namespace with the semantics kube-rs's watcher and Api::create/delete
rely on: a global resourceVersion, uid and creationTimestamp on create, label and field
selectors, list pages with continue tokens, and an event log that watches replay from a
resourceVersion (410 Gone when it is older than the log keeps)."""
import bisect
import copy
import datetime
import re
import threading
import uuid

MAX_EVENTS = 100_000  # the event log a watch can resume from; older resourceVersions get 410


class SelectorError(ValueError):
    pass


_LABEL_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_LABEL_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def parse_label_selector(text):
    """A list of (key, op, values) from a labelSelector: `k=v`, `k==v`, `k!=v`, `k`, `!k`,
    `k in (a,b)`, `k notin (a,b)`, comma-separated. Raises SelectorError otherwise."""
    terms, rest = [], (text or "").strip()
    term_re = re.compile(
        rf"\s*(?:(?P<not>!)\s*(?P<nkey>{_LABEL_KEY})"
        rf"|(?P<skey>{_LABEL_KEY})\s+(?P<setop>in|notin)\s+\((?P<vals>[^)]*)\)"
        rf"|(?P<key>{_LABEL_KEY})\s*(?:(?P<op>==|=|!=)\s*(?P<val>{_LABEL_VALUE}))?)\s*(?:,|$)")
    while rest:
        m = term_re.match(rest)
        if not m or m.end() == 0:
            raise SelectorError(f"unable to parse requirement: {rest!r}")
        if m.group("not"):
            terms.append((m.group("nkey"), "!exists", ()))
        elif m.group("setop"):
            vals = tuple(v.strip() for v in m.group("vals").split(",") if v.strip())
            terms.append((m.group("skey"), m.group("setop"), vals))
        elif m.group("op"):
            op = "!=" if m.group("op") == "!=" else "="
            terms.append((m.group("key"), op, (m.group("val") or "",)))
        else:
            terms.append((m.group("key"), "exists", ()))
        rest = rest[m.end():]
    return terms


def label_match(terms, labels):
    for key, op, vals in terms:
        have = labels.get(key)
        if op == "=" and have != vals[0]:
            return False
        if op == "!=" and have == vals[0]:
            return False
        if op == "exists" and have is None:
            return False
        if op == "!exists" and have is not None:
            return False
        if op == "in" and have not in vals:
            return False
        if op == "notin" and have in vals:
            return False
    return True


def parse_field_selector(text):
    """[(field, op, value)] for metadata.name / metadata.namespace (= == !=)."""
    terms = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        m = re.fullmatch(r"(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*(\S*)", part)
        if not m:
            raise SelectorError(f"field label not supported: {part!r}")
        terms.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
    return terms


def field_match(terms, obj):
    meta = obj["metadata"]
    for field, op, value in terms:
        have = meta.get(field.split(".", 1)[1])
        if (have == value) != (op == "="):
            return False
    return True


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Thread-safe objects by name plus the event log. Every change bumps the one
    resourceVersion counter (as etcd's revision does) and wakes waiting watches."""

    def __init__(self, namespace, kind="MailCredential", api_version="mailcred.io/v1alpha1"):
        self.namespace, self.kind, self.api_version = namespace, kind, api_version
        self.objects = {}
        self.events = []  # (rv, type, object copy)
        self.rv = 1
        self.oldest_rv = 1  # a watch from an older resourceVersion than this gets 410 Gone
        self.cond = threading.Condition()

    # -- changes ---------------------------------------------------------------------------
    def _record(self, etype, obj):
        self.events.append((self.rv, etype, copy.deepcopy(obj)))
        if len(self.events) > MAX_EVENTS:
            del self.events[: len(self.events) - MAX_EVENTS]
            self.oldest_rv = self.events[0][0] - 1
        self.cond.notify_all()

    def create(self, obj):
        """(True, stored copy) or (False, "AlreadyExists"/"Invalid: ...")."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        with self.cond:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name")
            if not name:
                return False, "Invalid: metadata.name: Required value: name or generateName is required"
            if meta.get("namespace", self.namespace) != self.namespace:
                return False, "BadRequest: the namespace of the object does not match the request"
            if name in self.objects:
                return False, "AlreadyExists"
            self.rv += 1
            meta.update(namespace=self.namespace, uid=str(uuid.uuid4()), resourceVersion=str(self.rv),
                        creationTimestamp=now_rfc3339(), generation=1)
            obj.setdefault("apiVersion", self.api_version)
            obj.setdefault("kind", self.kind)
            self.objects[name] = obj
            self._record("ADDED", obj)
            return True, copy.deepcopy(obj)

    def load(self, objs):
        """Bulk insert (a benchmark's 10,000 outlines) with one event each."""
        out = []
        for obj in objs:
            ok, stored = self.create(obj)
            if not ok:
                raise ValueError(f"{obj['metadata'].get('name')}: {stored}")
            out.append(stored)
        return out

    def replace(self, name, mutate):
        """Applies mutate(obj) in place (a merge patch, a status update): the new copy, None
        when there is no such object."""
        with self.cond:
            obj = self.objects.get(name)
            if obj is None:
                return None
            before = copy.deepcopy(obj.get("spec"))
            mutate(obj)
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            if obj.get("spec") != before:
                obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            self._record("MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, name):
        with self.cond:
            obj = self.objects.pop(name, None)
            if obj is None:
                return None
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._record("DELETED", obj)
            return copy.deepcopy(obj)

    # -- reads -----------------------------------------------------------------------------
    def get(self, name):
        with self.cond:
            obj = self.objects.get(name)
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, labels=(), fields=(), limit=None, cont=None):
        """(items, resourceVersion, continue token or ""); pages are in name order, the token
        is the last name of the page (the snapshot is not kept: fine for a test server)."""
        with self.cond:
            names = sorted(n for n, o in self.objects.items()
                           if label_match(labels, o["metadata"].get("labels") or {}) and field_match(fields, o))
            if cont:
                names = [n for n in names if n > cont]
            more = ""
            if limit and len(names) > limit:
                names = names[:limit]
                more = names[-1]
            return [copy.deepcopy(self.objects[n]) for n in names], str(self.rv), more

    def events_after(self, rv):
        """(events newer than rv, gone): gone when rv is older than the retained log."""
        with self.cond:
            if rv < self.oldest_rv:
                return [], True
            return self.events[bisect.bisect_right(self.events, rv, key=lambda e: e[0]):], False
