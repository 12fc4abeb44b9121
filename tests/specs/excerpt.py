"""Cut the OpenAI spec down to what the tests read: the image and model paths, and every
component schema they reference (transitively). Re-run when OpenAI's spec is updated:

    python tests/specs/excerpt.py path/to/openai-openapi.yaml > tests/specs/openai-openapi.yaml
"""

from __future__ import annotations

import sys

import yaml

PATHS = ("/images/generations", "/images/edits", "/images/variations", "/models", "/models/{model}")
# Schemas the tests validate against directly, whether or not a kept path names them.
ROOTS = ("ImagesResponse", "Error", "ErrorResponse", "Model", "ListModelsResponse")


def refs(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            found.add(ref)
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def excerpt(spec: dict) -> dict:
    paths = {path: spec["paths"][path] for path in PATHS}
    wanted = {f"#/components/schemas/{name}" for name in ROOTS} | refs(paths)
    kept: dict[str, dict] = {}
    while wanted:
        ref = wanted.pop()
        _, _, section, name = ref.split("/", 3)
        if name in kept.setdefault(section, {}):
            continue
        kept[section][name] = spec["components"][section][name]
        wanted |= refs(kept[section][name])
    return {
        "openapi": spec["openapi"],
        "info": spec["info"],
        "servers": spec.get("servers", []),
        "paths": paths,
        "components": {section: dict(sorted(items.items())) for section, items in kept.items()},
    }


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        source = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    yaml.safe_dump(excerpt(source), sys.stdout, sort_keys=False, allow_unicode=True, width=100)
