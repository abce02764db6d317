"""The package's architecture as a test: one folder per concern, dependencies pointing one way
(models <- metrics <- priors <- data <- analysis <- training <- hub), no import cycles, and `models/` self-contained
(its files are the remote-code set `save_pretrained` copies next to the weights)."""

from __future__ import annotations

import ast
from pathlib import Path

import etfuser_hf

PACKAGE_DIR = Path(etfuser_hf.__file__).parent
LAYERS = ("models", "metrics", "priors", "data", "analysis", "training", "hub")  # a module may import only from its layer or below
# training/ in three parts, each reading only those before it; its entry points read all three
TRAINING_PARTS = ("run", "comparison", "report")
TRAINING_ENTRY_POINTS = {"main.py", "validation_sweep.py", "data_size_curve.py"}
MAX_LINES_OUTSIDE_MODELS = 450


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every etfuser_hf module `path` imports, at top level or inside functions (lazy imports count too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("etfuser_hf"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("etfuser_hf"))
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        graph[name] = {target for target in imported_modules(path) if target in paths and target != name}
    return graph


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def test_models_import_nothing_outside_models():
    outside = {(module, target) for module, targets in import_graph().items() if layer(module) == "models"
               for target in targets if layer(target) != "models"}
    assert not outside, f"models/ must be self-contained (remote code), but imports {sorted(outside)}"


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles}"


def test_dependencies_point_one_way():
    rank = {name: position for position, name in enumerate(LAYERS)}
    upward = {(module, target) for module, targets in import_graph().items() for target in targets
              if layer(module) and layer(target) and rank[layer(target)] > rank[layer(module)]}
    assert not upward, f"imports against the layer order {' <- '.join(LAYERS)}: {sorted(upward)}"


def test_training_parts_point_one_way():
    def part(module: str) -> str | None:
        parts = module.split(".")
        return parts[2] if len(parts) > 3 and parts[1] == "training" and parts[2] in TRAINING_PARTS else None

    rank = {name: position for position, name in enumerate(TRAINING_PARTS)}
    upward = {(module, target) for module, targets in import_graph().items() for target in targets
              if part(module) and part(target) and rank[part(target)] > rank[part(module)]}
    assert not upward, f"imports against training's order {' <- '.join(TRAINING_PARTS)}: {sorted(upward)}"
    loose = {path.name for path in (PACKAGE_DIR / "training").glob("*.py")} - {"__init__.py", *TRAINING_ENTRY_POINTS}
    assert not loose, f"training/ keeps only its entry points beside its three parts, found {sorted(loose)}"


def test_modules_outside_models_stay_short():
    long = {module_name(path): count for path in PACKAGE_DIR.rglob("*.py")
            if "models" not in path.relative_to(PACKAGE_DIR).parts[:1]
            and (count := len(path.read_text().splitlines())) > MAX_LINES_OUTSIDE_MODELS}
    assert not long, f"modules over {MAX_LINES_OUTSIDE_MODELS} lines outside models/: {long}"


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "etfuser_hf.models.configuration_etfuser" in graph["etfuser_hf.models.modeling_etfuser"]
    assert "etfuser_hf.training.main" in graph["etfuser_hf.hub.cli"]  # imported inside a function
    assert "etfuser_hf.analysis.pipeline" in graph["etfuser_hf.hub.cli"]
