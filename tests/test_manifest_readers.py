"""No code outside ``rewarddance.repository`` reads a model manifest by string keys: everything goes through the typed
manifest (``ModelVersion.manifest``), so its format has one reader and one writer. The trainer's own run record
(run.json) is a different file; code that reads it names it ``run_json``, not ``manifest``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A manifest read by string keys: ``manifest["x"]``, ``manifest.get("x")``, ``.manifest["x"]``, ``manifest)["x"]``.
KEYED = re.compile(r"manifest\w*\)?\s*(\[\s*['\"]|\.get\(\s*['\"])")
SCANNED = ("src", "server", "exporter", "trainer", "benchmarks", "scripts", "tests", "client")


def test_no_code_outside_the_repository_package_indexes_manifest_keys():
    package = ROOT / "src" / "rewarddance" / "repository"
    offenders = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if package in path.parents or path == Path(__file__).resolve():
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if KEYED.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "read the typed manifest (rewarddance.repository) instead:\n" + "\n".join(offenders)


def test_the_tree_scan_catches_what_it_should():
    assert KEYED.search('kind = version.manifest["kind"]') and KEYED.search("m = manifest.get('metrics', {})")
    assert KEYED.search('x = json.loads(p.read_text()) if manifest)["a"]')
    assert not KEYED.search("manifest.metrics.get('spearman_reward')") and not KEYED.search("manifests[name]")
