"""The imports point one way: core <- data, inference, eval <- models <- experiments.

Read from the source (no import runs), so a violation is named with its file and line."""

import ast
import pathlib

from tests.helpers import REPO

PACKAGE = REPO / "genjax_lab"
# What each layer of genjax_lab may import from the package (top-level modules such as api,
# saving and report sit above the models and are not checked here).
ALLOWED = {
    "core": {"core"},
    "data": {"core", "data"},
    "inference": {"core", "inference"},
    "eval": {"core", "eval"},
    "models": {"core", "data", "inference", "eval", "models", "api"},
}
# A model plugs into the loop through these; anything else from the loop is a utility that
# belongs in core's lower modules.
LOOP_INTERFACE = {"Family", "base_config"}


def _imports(path: pathlib.Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every genjax_lab import in `path`, nested ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("genjax_lab"):
                found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, alias.name, [])
                for alias in node.names
                if alias.name.startswith("genjax_lab")
            ]
    return found


def _target(module: str, names: list[str]) -> list[str]:
    """Dotted modules an import reaches: `from genjax_lab.models import gmm` reaches
    genjax_lab.models.gmm, `from genjax_lab.models.gmm import fit` genjax_lab.models.gmm."""
    parts = module.split(".")
    if len(parts) == 2 and names:  # from genjax_lab.<layer> import <module>, ...
        return [f"{module}.{name}" for name in names]
    return [module]


def _layer_and_family(dotted: str) -> tuple[str, str | None]:
    parts = dotted.split(".")
    layer = parts[1] if len(parts) > 1 else ""
    family = parts[2] if layer == "models" and len(parts) > 2 else None
    return layer, family


def _violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        dotted = ".".join(path.relative_to(REPO).with_suffix("").parts)
        layer, family = _layer_and_family(dotted)
        if layer not in ALLOWED:
            continue
        for line, module, names in _imports(path):
            where = f"{path.relative_to(REPO)}:{line}"
            reached_modules = _target(module, names)
            if "genjax_lab.core.loop" in reached_modules and layer != "core":
                extra = set(names) - LOOP_INTERFACE if module == "genjax_lab.core.loop" else set()
                if extra or module != "genjax_lab.core.loop":
                    found.append(f"{where} takes {sorted(extra) or 'the module'} from the loop")
            for reached in reached_modules:
                other_layer, other_family = _layer_and_family(reached)
                if other_layer not in ALLOWED[layer] and other_layer in {*ALLOWED, "api"}:
                    found.append(f"{where}: {layer} imports {reached}")
                if other_family and family and other_family != family:
                    found.append(f"{where}: model {family} imports model {other_family}")
    return found


def test_imports_point_one_way():
    assert _violations() == []


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    fake = tmp_path / "genjax_lab"
    (fake / "eval").mkdir(parents=True)
    (fake / "models" / "a").mkdir(parents=True)
    (fake / "eval" / "metric.py").write_text("from genjax_lab.models import vae\n")
    (fake / "models" / "a" / "fit.py").write_text(
        "def f():\n    from genjax_lab.models.b import helper\n"
        "from genjax_lab.core.loop import evaluate\n"
        "from genjax_lab.core import loop\n"
    )
    monkeypatch.setattr("tests.test_layering.REPO", tmp_path)
    monkeypatch.setattr("tests.test_layering.PACKAGE", fake)
    assert sorted(_violations()) == [
        "genjax_lab/eval/metric.py:1: eval imports genjax_lab.models.vae",
        "genjax_lab/models/a/fit.py:2: model a imports model b",
        "genjax_lab/models/a/fit.py:3 takes ['evaluate'] from the loop",
        "genjax_lab/models/a/fit.py:4 takes the module from the loop",
    ]
