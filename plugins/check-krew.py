#!/usr/bin/env python3
"""The krew manifest (plugins/mailcred.yaml) against the release workflow that builds what it
points at, and against krew's Plugin rules.

  check-krew.py check            the template's platforms, archive names and files are the
                                 workflow's build matrix and archive step; the template filled
                                 in with a sample version and checksums is a valid Plugin
  check-krew.py render TAG DIST  the manifest for TAG with the checksums of DIST/*.sha256
                                 (the release workflow publishes it)
"""

import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "plugins" / "mailcred.yaml"
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
ARCHIVE = "kubectl-mailcred_{tag}_{os}_{arch}.tar.gz"
SEMVER = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")


def render(text, tag, checksums):
    out = text.replace("VERSION", tag)
    for (os_, arch), digest in checksums.items():
        out = out.replace(f"SHA256_{os_}_{arch}", digest)
    return yaml.safe_load(out)


def valid_plugin(doc):
    """Errors of a filled-in manifest, after krew's validation (pkg/index/validation)."""
    errors = []
    if doc.get("apiVersion") != "krew.googlecontainertools.github.com/v1alpha2" or doc.get("kind") != "Plugin":
        errors.append("apiVersion/kind is not krew's Plugin")
    spec = doc.get("spec", {})
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", doc.get("metadata", {}).get("name", "")):
        errors.append("metadata.name is not a plugin name")
    if not SEMVER.match(str(spec.get("version", ""))):
        errors.append(f"spec.version {spec.get('version')!r} is not v-prefixed semver")
    for key in ("shortDescription", "homepage", "description"):
        if not spec.get(key):
            errors.append(f"spec.{key} missing")
    if len(spec.get("shortDescription", "")) > 50:
        errors.append("shortDescription is longer than krew's index allows (50)")
    seen = set()
    for p in spec.get("platforms", []):
        labels = p.get("selector", {}).get("matchLabels", {})
        key = (labels.get("os"), labels.get("arch"))
        if key in seen:
            errors.append(f"platform {key} twice")
        seen.add(key)
        if not re.fullmatch(r"[0-9a-f]{64}", str(p.get("sha256", ""))):
            errors.append(f"{key}: sha256 is not 64 hex digits")
        if not str(p.get("uri", "")).startswith("https://"):
            errors.append(f"{key}: uri is not https")
        installed = {Path(f["from"]).name for f in p.get("files", []) if f.get("to") in (".", "./")}
        if p.get("bin") not in installed:
            errors.append(f"{key}: bin {p.get('bin')!r} is not among the files installed at the root")
    if not seen:
        errors.append("no platforms")
    return errors


def workflow_matrix():
    wf = yaml.safe_load(WORKFLOW.read_text())
    build = wf["jobs"]["build"]
    matrix = {(m["os"], m["arch"]) for m in build["strategy"]["matrix"]["include"]}
    archive_step = next(s for s in build["steps"] if s.get("name") == "archive")["run"]
    return matrix, archive_step


def check():
    text = TEMPLATE.read_text()
    template = yaml.safe_load(text)
    errors = []
    platforms = {}
    for p in template["spec"]["platforms"]:
        labels = p["selector"]["matchLabels"]
        platforms[(labels["os"], labels["arch"])] = p
    matrix, archive_step = workflow_matrix()
    if set(platforms) != matrix:
        errors.append(f"manifest platforms {sorted(platforms)} != release matrix {sorted(matrix)}")
    if 'name="kubectl-mailcred_${TAG}_${{ matrix.os }}_${{ matrix.arch }}"' not in archive_step:
        errors.append("the workflow's archive name is not " + ARCHIVE)
    archived = re.search(r"tar -C dist -czf \"\$name.tar.gz\" (.+)", archive_step)
    archived = set(archived.group(1).split()) if archived else set()
    for key, p in platforms.items():
        name = ARCHIVE.format(tag="VERSION", os=key[0], arch=key[1])
        if not p["uri"].endswith("/VERSION/" + name):
            errors.append(f"{key}: uri {p['uri']} does not end in /VERSION/{name}")
        files = {f["from"] for f in p.get("files", [])}
        if files != archived:
            errors.append(f"{key}: manifest files {sorted(files)} != archived {sorted(archived)}")
    sample = render(text, "v0.1.0", {k: "0" * 64 for k in platforms})
    errors += valid_plugin(sample)
    # And a check that can fail: a placeholder left unfilled is refused.
    if not valid_plugin(render(text, "v0.1.0", {})):
        errors.append("validation accepts a manifest with unfilled checksums")
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


def render_release(tag, dist):
    checksums = {}
    for f in Path(dist).glob("*.tar.gz.sha256"):
        m = re.fullmatch(r"kubectl-mailcred_(.+)_([a-z]+)_([a-z0-9]+)\.tar\.gz\.sha256", f.name)
        if m and m.group(1) == tag:
            checksums[(m.group(2), m.group(3))] = f.read_text().split()[0]
    doc = render(TEMPLATE.read_text(), tag, checksums)
    errors = valid_plugin(doc)
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        return 1
    print(yaml.safe_dump(doc, sort_keys=False), end="")
    return 0


def main():
    if sys.argv[1:] == ["check"]:
        return check()
    if len(sys.argv) == 4 and sys.argv[1] == "render":
        return render_release(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
