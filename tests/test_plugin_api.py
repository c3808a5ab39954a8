"""Plugins use only the public plugin API, and the leaderboard reads results only (docs/plugins.md)."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PLUGIN_API = {"benchmark.plugin", "benchmark.toolkit"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level and TYPE_CHECKING imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def harness_imports(package: str) -> dict[str, set[str]]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        taken = {m for m in imported_modules(path) if m == "benchmark" or m.startswith("benchmark.")}
        if taken:
            out[str(path.relative_to(ROOT))] = taken
    return out


def test_plugins_import_only_the_public_plugin_api():
    for package in ("attacks", "defenses", "examples"):
        for path, taken in harness_imports(package).items():
            # ``from benchmark.toolkit import logits_of`` also names benchmark.toolkit.logits_of
            outside = {m for m in taken if m not in PLUGIN_API and m.rsplit(".", 1)[0] not in PLUGIN_API}
            if path.startswith("examples/stripes_dataset"):  # a dataset plugin registers through benchmark.datasets
                outside -= {m for m in outside if m.startswith("benchmark.datasets")}
            assert not outside, f"{path} imports {sorted(outside)} (plugins may import only {sorted(PLUGIN_API)})"


def test_the_leaderboard_imports_no_plugin_or_model():
    for path in sorted((ROOT / "leaderboard").rglob("*.py")):
        taken = {m.split(".")[0] for m in imported_modules(path)}
        assert not taken & {"attacks", "defenses", "models"}, f"{path.relative_to(ROOT)} imports {taken & {'attacks', 'defenses', 'models'}}"
