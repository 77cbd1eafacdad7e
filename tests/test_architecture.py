"""The house rules that keep the library easy to change, checked on its source."""

import ast
import importlib
import multiprocessing
import re
import subprocess
import sys
import warnings

import pytest
from conftest import ROOT

from datamodels._moved import FORWARDED, MOVED
from datamodels.interactions import ENGINES

PACKAGE = ROOT / "datamodels"
# The Hydra plugin imports the library; it is in the graph so that no import runs back from the
# library to it.
PLUGINS = ROOT / "hydra_plugins"


def modules() -> dict[str, ast.Module]:
    """Every module of the library and of its Hydra plugin, a package by its ``__init__.py``."""
    found = {}
    for path in [*PACKAGE.rglob("*.py"), *PLUGINS.rglob("*.py")]:
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text())
    return found


def imported(name: str, tree: ast.Module, known) -> set[str]:
    """The modules of ``known`` that ``name`` imports (at any depth of its code), with the
    packages above them: importing ``a.b.c`` runs ``a/b/__init__.py`` first, unless ``name``
    lies inside ``a.b`` (then that package is being imported already)."""
    package = name if (ROOT / name.replace(".", "/") / "__init__.py").exists() else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                out.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
    out |= {".".join(m.split(".")[:k]) for m in set(out) for k in range(1, m.count(".") + 1)}
    return {m for m in out if m in known and m != name and not name.startswith(m + ".")}


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


# The library's floors in pipeline order, lowest first (``datamodels/__init__.py`` draws them): a
# module imports only modules on its own floor or below, so nothing runs back up the pipeline.
FLOORS = (
    ("datamodels", "datamodels._moved", "datamodels.errors", "datamodels.renamed", "datamodels.settings",
     "datamodels.tables", "datamodels.packed", "datamodels.processes", "datamodels.cli", "datamodels.run"),
    ("datamodels.interactions",),
    ("datamodels.store",),
    ("datamodels.sweep",),
    ("datamodels.fit",),
    ("datamodels.pruning",),
    ("datamodels.ablation",),
    ("datamodels.views",),
)


def floor(module: str) -> int:
    """The floor of a library module: that of the longest name of :data:`FLOORS` it lies in."""
    found = [(len(prefix), level) for level, names in enumerate(FLOORS) for prefix in names
             if module == prefix or module.startswith(prefix + ".")]
    assert found, f"{module} is on no floor of FLOORS: add it where it belongs in the pipeline"
    return max(found)[1]


def test_no_import_runs_back_up_the_pipeline():
    trees = modules()
    found = [f"{name} (floor {floor(name)}) imports {other} (floor {floor(other)})"
             for name, tree in trees.items() if name.split(".")[0] == "datamodels"
             for other in sorted(imported(name, tree, trees)) if floor(other) > floor(name)]
    assert not found, "\n".join(found)


def test_the_library_never_imports_a_hydra_plugin():
    """Plugins import the library, never the other way: the library stays callable without Hydra's
    plugin discovery, and a plugin may need anything of it."""
    found = []
    for name, tree in modules().items():
        if name.split(".")[0] != "datamodels":
            continue
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{name}:{node.lineno} imports {m}" for m in names if m.split(".")[0] == "hydra_plugins"]
    assert not found, "\n".join(found)


def test_no_caller_asks_an_engine_what_type_it_is():
    engines = {cls.__name__ for cls in ENGINES.values()}
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "jobs").glob("*.py")]:
        if path.parent.name == "interactions":
            continue  # the engines themselves
        for call in re.findall(r"isinstance\([^)]*\)", path.read_text()):
            assert not any(name in call for name in engines), f"{path}: {call}"


def test_run_folder_paths_are_named_in_one_module():
    """No code outside datamodels/run/folder.py spells a file of a run folder (docs may)."""
    names = ("run.json", "config.json", "fit_metrics.parquet", "interactions.parquet",
             "keep_sets.parquet", "evaluation.parquet", "paired.csv", "index.html", ".inputs", "submission-")
    found = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "jobs").glob("*.py"), *PLUGINS.rglob("*.py")]:
        if path == PACKAGE / "run" / "folder.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}" for name in names
                          if name in node.value]
    assert not found, "paths of the run folder spelt outside datamodels/run/folder.py:\n" + "\n".join(found)


def test_jobs_are_shells():
    for path in (ROOT / "jobs").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 42, f"{path} does more than turn its config into a call"


# What makes a test slow: it starts a job or another process, executes a notebook, compiles
# (a ``compile=`` mode other than None), or runs the GPU session's benchmark sections. Read here
# from the source; the processes a library default starts are refused at run time
# (conftest.unit_tests_start_no_process).
SLOW_CALLS = {"run_job", "NotebookClient", "subprocess.run", "subprocess.Popen", "subprocess.check_output",
              "torch.compile", "gpu_session.main", "compile="}


def _called(node: ast.AST) -> set[str]:
    """The names a function calls (``f``, ``module.f``), and ``compile=`` where a call compiles."""
    names = set()
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        func = call.func
        if isinstance(func, ast.Name):
            names.add(func.id)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            names.add(f"{func.value.id}.{func.attr}")
        if any(k.arg == "compile" and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)
               for k in call.keywords):
            names.add("compile=")
    return names


def _marked_slow(node: ast.AST) -> bool:
    return any("slow" in ast.unparse(d) for d in getattr(node, "decorator_list", []))


def unmarked_slow_tests() -> list[str]:
    """Tests that start a job or a process, execute a notebook or compile (directly, through a
    helper of their module, or through a fixture that does) without the ``slow`` mark."""
    found = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n) and "slow" in ast.unparse(n)
               for n in tree.body):
            continue
        functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
        slow = {name for name, f in functions.items() if _called(f) & SLOW_CALLS}
        while True:  # through the module's helpers and fixtures
            more = {name for name, f in functions.items() if name not in slow
                    and (_called(f) & slow or {a.arg for a in f.args.args} & slow)}
            if not more:
                break
            slow |= more
        found += [f"{path.name}::{name}" for name in sorted(slow)
                  if name.startswith("test_") and not _marked_slow(functions[name])]
    return found


def test_every_test_that_starts_a_process_is_marked_slow():
    """make test-fast (-m 'not slow') stays a tier of unit tests: a test that starts a job or a
    process, runs a notebook or compiles carries the slow mark."""
    assert unmarked_slow_tests() == []


def test_a_unit_test_that_starts_a_process_fails_naming_itself():
    """What the source does not show (a library default that starts workers) conftest's guard
    refuses at run time, in every test without the slow mark; short system commands pass."""
    with pytest.raises(AssertionError, match="test_a_unit_test_that_starts_a_process_fails_naming_itself starts a "
                                             r"worker process \(SpawnProcess\): mark it slow"):
        multiprocessing.get_context("spawn").Process(target=print).start()
    with pytest.raises(AssertionError, match="starts a Python interpreter"):
        subprocess.check_call([sys.executable, "-c", "pass"])
    assert subprocess.check_call(["true"]) == 0


def test_the_old_import_paths_still_work_and_say_where_the_module_went():
    for old, new in MOVED.items():
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
            module = importlib.import_module(old)
        assert module is importlib.import_module(new)
    for package, (target, names) in FORWARDED.items():
        module = importlib.import_module(target)
        with warnings.catch_warnings():  # a name renamed since (shards.Sweep) warns on its own
            warnings.simplefilter("ignore", DeprecationWarning)
            assert all(hasattr(module, name) for name in names), f"{package}: forwarded names missing from {target}"
        for name in names:
            vars(importlib.import_module(package)).pop(name, None)
            with pytest.warns(DeprecationWarning, match=f"{package}.{name} moved to {target}.{name}"):
                assert getattr(importlib.import_module(package), name) is getattr(module, name)


@pytest.mark.slow
def test_an_old_module_path_still_runs_as_a_script():
    proc = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", "-m", "datamodels.planted", "--help"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "usage: python -m datamodels.sweep.planted" in proc.stdout
    assert "datamodels.planted moved to datamodels.sweep.planted" in proc.stderr
