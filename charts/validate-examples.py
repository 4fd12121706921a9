#!/usr/bin/env python3
"""Validates MailCredential manifests the way the API server would, offline: the CRD's
openAPIV3Schema (as JSON Schema, unknown fields refused as kubectl's strict field validation
does), its x-kubernetes-validations CEL rules (cel-python), and the object's kind/metadata.

Usage: validate-examples.py FILE...   (CRD: crds/mailcredential.yaml of the repository)
Exit status 1 when any document of any FILE is invalid; prints every error.

       validate-examples.py --invalid FILE...
Each FILE must be refused, with every error its `# expect-error: TEXT` lines name (substrings
of the messages), so a deliberately broken example fails for the reasons it claims.
"""

import copy
import re
import sys
from pathlib import Path

import celpy
import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
CRD = REPO / "crds" / "mailcredential.yaml"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def to_json_schema(node):
    """OpenAPI v3 (Kubernetes structural schema) -> JSON Schema draft 7."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in ("x-kubernetes-validations", "description", "format", "default"):
            continue  # CEL is evaluated separately; formats like uint16 are not JSON Schema's
        if k == "properties":
            out[k] = {name: to_json_schema(s) for name, s in v.items()}
        else:
            out[k] = to_json_schema(v)
    if node.get("nullable"):
        out.pop("nullable", None)
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
    if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def cel_rules(schema, path="self"):
    """(path, rule, message, sub-schema) of every x-kubernetes-validations entry."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule["rule"], rule.get("message", rule["rule"])
    for name, sub in schema.get("properties", {}).items():
        yield from cel_rules(sub, f"{path}.{name}")


def resolve(obj, path):
    node = obj
    for part in path.split(".")[1:]:
        if not isinstance(node, dict) or part not in node or node[part] is None:
            return None
        node = node[part]
    return node


def validate(doc, version):
    errors = []
    if doc.get("apiVersion") != "mailcred.io/v1alpha1" or doc.get("kind") != "MailCredential":
        return [f"not a mailcred.io/v1alpha1 MailCredential: {doc.get('apiVersion')}/{doc.get('kind')}"]
    meta = doc.get("metadata") or {}
    name, ns = meta.get("name", ""), meta.get("namespace", "")
    if not (DNS_SUBDOMAIN.match(name or "") and len(name) <= 253):
        errors.append(f"metadata.name {name!r} is not a DNS subdomain")
    if ns and not (DNS_LABEL.match(ns) and len(ns) <= 63):
        errors.append(f"metadata.namespace {ns!r} is not a DNS label")
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    validator = jsonschema.Draft7Validator(to_json_schema(schema))
    for e in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in e.absolute_path) or "<root>"
        errors.append(f"{where}: {e.message}")
    env = celpy.Environment()
    for path, rule, message in cel_rules(schema):
        target = resolve(body, path)
        if target is None:
            continue  # rules apply to fields that are present
        program = env.program(env.compile(rule))
        result = program.evaluate({"self": celpy.json_to_cel(target)})
        if not bool(result):
            errors.append(f"{path[5:] or '<root>'}: {message}")
    return errors


def main():
    crd = next(d for d in yaml.safe_load_all(CRD.read_text()) if d)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    args = sys.argv[1:]
    invalid = bool(args) and args[0] == "--invalid"
    if invalid:
        args = args[1:]
    status = 0
    for path in args:
        text = Path(path).read_text()
        if invalid:
            expected = re.findall(r"^# expect-error: (.+)$", text, re.M)
            found = [e for doc in yaml.safe_load_all(text) if doc for e in validate(doc, version)]
            for e in found:
                print(f"  {e}")
            missing = [x for x in expected if not any(x in e for e in found)]
            if not expected:
                print(f"{path}: no '# expect-error:' lines", file=sys.stderr)
                status = 1
            elif missing:
                print(f"{path}: expected errors not reported: {missing}", file=sys.stderr)
                status = 1
            else:
                print(f"{path}: refused with all {len(expected)} expected errors")
            continue
        for i, doc in enumerate(d for d in yaml.safe_load_all(text) if d):
            errors = validate(doc, version)
            label = f"{path}#{i} {doc.get('metadata', {}).get('namespace', '')}/{doc.get('metadata', {}).get('name', '')}"
            if errors:
                status = 1
                print(f"{label}: INVALID", file=sys.stderr)
                for e in errors:
                    print(f"  {e}", file=sys.stderr)
            else:
                print(f"{label}: valid")
    return status


if __name__ == "__main__":
    sys.exit(main())
