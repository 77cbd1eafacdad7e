"""The house rules that keep the library easy to change, checked on its source."""

import ast
import re

from conftest import ROOT

from datamodels.interactions import ENGINES

PACKAGE = ROOT / "datamodels"


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text())
    return found


def imported(name: str, tree: ast.Module, known) -> set[str]:
    """The package's modules that ``name`` imports (at any depth of its code)."""
    package = name if (PACKAGE / name.split(".", 1)[-1].replace(".", "/") / "__init__.py").exists() else \
        name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                out.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
    return {m for m in out if m in known and m != name}


def test_the_import_graph_has_no_circles():
    trees = modules()
    graph = {name: imported(name, tree, trees) for name, tree in trees.items()}
    done, path = set(), []

    def visit(node):
        if node in path:
            raise AssertionError(f"import circle: {' -> '.join(path[path.index(node):] + [node])}")
        if node not in done:
            path.append(node)
            for nxt in sorted(graph[node]):
                visit(nxt)
            path.pop()
            done.add(node)

    for node in sorted(graph):
        visit(node)


def test_no_caller_asks_an_engine_what_type_it_is():
    engines = {cls.__name__ for cls in ENGINES.values()}
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "jobs").glob("*.py")]:
        if path.parent.name == "interactions":
            continue  # the engines themselves
        for call in re.findall(r"isinstance\([^)]*\)", path.read_text()):
            assert not any(name in call for name in engines), f"{path}: {call}"


def test_run_folder_paths_are_named_in_one_module():
    """No code outside datamodels/run_folder.py spells a file of a run folder (docs may)."""
    names = ("run.json", "config.json", "fit_metrics.parquet", "interactions.parquet",
             "keep_sets.parquet", "evaluation.parquet", "paired.csv", "index.html", ".inputs")
    found = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "jobs").glob("*.py")]:
        if path.name == "run_folder.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}" for name in names
                          if name in node.value]
    assert not found, "paths of the run folder spelt outside datamodels/run_folder.py:\n" + "\n".join(found)


def test_jobs_are_shells():
    for path in (ROOT / "jobs").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 42, f"{path} does more than turn its config into a call"
