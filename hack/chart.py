"""Checks the Helm chart with Helm's own engine (helm-python-sdk, offline):

- lints it; checks values.schema.json accepts the default and every ci/*-values.yaml set and
  refuses a bad set;
- renders each set twice (the output must not change: no random values, no lookups) and
  validates every object against Kubernetes' OpenAPI schemas (kubernetes-validate, strict);
- checks the chart's crds/ equal the repository's crds/;
- checks deploy/manifests/ferrolb.yaml is the default render (plus the Namespace and the
  CRDs), or rewrites it with --write.

Usage: python hack/chart.py [--write]
"""

import pathlib
import sys

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy/charts/ferrolb"
MANIFEST = ROOT / "deploy/manifests/ferrolb.yaml"
NAMESPACE = "metallb-system"
KUBERNETES = "1.33.0"
# Kinds outside Kubernetes' own schemas.
FOREIGN = {"ServiceMonitor", "PodMonitor", "Certificate", "Issuer"}

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def render(chart, values):
    out = chart.render(values, name="ferrolb", namespace=NAMESPACE, is_install=True)
    docs = []
    for path in sorted(out):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(out[path]):
            if doc:
                docs.append((path, doc))
    return out, docs


def check_set(chart, label, values):
    try:
        chart.validate_schema(values)
    except helm.HelmError as error:
        fail(f"{label}: values.schema.json refuses the values: {error}")
        return None
    first, docs = render(chart, values)
    second, _ = render(chart, values)
    if first != second:
        fail(f"{label}: two renders differ")
    kinds = {}
    for path, doc in docs:
        kind = doc.get("kind")
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind in FOREIGN:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            fail(f"{label}: {path}: {kind}/{doc['metadata'].get('name')}: {error.message}")
        except Exception as error:  # schema lookups and the like
            fail(f"{label}: {path}: {kind}: {error}")
    print(f"ok   {label}: {len(docs)} objects " + ", ".join(f"{k}×{n}" for k, n in sorted(kinds.items())))
    return first


def manifest(rendered):
    parts = [
        "# ferrolb: the plain install, rendered from deploy/charts/ferrolb with default values\n"
        "# by hack/chart.py --write. kubectl apply -f deploy/manifests/ferrolb.yaml\n",
        yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}, sort_keys=False),
    ]
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        text = crd.read_text()
        parts.append(text if text.startswith("---") else text)
    for path in sorted(rendered):
        if path.endswith("NOTES.txt") or not rendered[path].strip():
            continue
        parts.append(f"# Source: {path}\n{rendered[path].strip()}\n")
    out = ""
    for part in parts:
        body = part.strip()
        if body.startswith("---"):
            body = body[3:].lstrip("\n")
        out += "---\n" + body + "\n"
    return out


def main():
    write = "--write" in sys.argv[1:]
    result = helm.lint(str(CHART))
    for message in result.get("messages", []):
        # Severity 1 is INFO (such as "icon is recommended").
        if message.get("severity", 0) > 1:
            fail(f"lint: {message}")
    for error in result.get("errors", []):
        fail(f"lint: {error}")
    print("ok   lint")

    chart = helm.Chart.load(str(CHART))
    default = check_set(chart, "default values", {})
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        check_set(chart, path.name, yaml.safe_load(path.read_text()) or {})
    for bad in [{"logLevel": "loud"}, {"speaker": {"memberlist": {"port": 0}}}, {"webhook": {"failurePolicy": "Sometimes"}}, {"typo": 1}]:
        try:
            chart.validate_schema(bad)
            fail(f"values.schema.json accepts {bad}")
        except helm.HelmError:
            pass
    print("ok   values.schema.json refuses bad values")

    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    theirs = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    if ours != theirs:
        fail("deploy/charts/ferrolb/crds/ differs from crds/ (copy crds/*.yaml into the chart)")
    else:
        print("ok   chart CRDs equal crds/")

    if default is not None:
        text = manifest(default)
        if write:
            MANIFEST.write_text(text)
            print(f"wrote {MANIFEST.relative_to(ROOT)}")
        elif not MANIFEST.exists() or MANIFEST.read_text() != text:
            fail("deploy/manifests/ferrolb.yaml is not the default render: run python hack/chart.py --write")
        else:
            print("ok   deploy/manifests/ferrolb.yaml is the default render")

    if failures:
        print(f"chart: {len(failures)} failure(s)")
        sys.exit(1)
    print("chart: all checks passed")


if __name__ == "__main__":
    main()
