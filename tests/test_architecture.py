"""The shape of the code: no import cycles between trainlab's modules, and training stays light."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import trainlab

SRC = Path(trainlab.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _lazy_homes(tree: ast.Module) -> dict[str, str]:
    """A package's ``_HOMES`` (public name -> submodule) of its lazy ``__getattr__``, if it has one."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_HOMES" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """The trainlab names ``module`` imports anywhere in its code, outside ``if TYPE_CHECKING:`` blocks.

    A package's imports inside functions are its lazy ``__getattr__``: they load on attribute access,
    which :func:`import_graph` resolves at the importer, so only its top-level imports count.
    """
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    nodes = tree.body if is_package else ast.walk(tree)
    found = set()
    for node in nodes:
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".rstrip(".")
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("trainlab")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the trainlab modules it imports; ``from pkg import name`` counts as importing the
    submodule that holds ``name`` (directly, or through the package's lazy ``_HOMES``)."""
    trees = {_module_name(p): (ast.parse(p.read_text()), p.name == "__init__.py") for p in SRC.rglob("*.py")}
    homes = {name: _lazy_homes(tree) for name, (tree, is_package) in trees.items() if is_package}
    graph = {}
    for name, (tree, is_package) in trees.items():
        edges = set()
        for target in _imports(tree, name, is_package):
            package, _, attr = target.rpartition(".")
            if target in trees:
                edges.add(target)
            elif attr in homes.get(package, {}):
                edges.add(f"{package}.{homes[package][attr]}")
            elif package in trees:
                edges.add(package)
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_function_level_and_lazy_imports():
    graph = import_graph()
    assert "trainlab.train.checkpoint" in graph["trainlab.train.plain"]
    assert "trainlab.models.registry" in graph["trainlab.train.plain"]  # through trainlab.models' lazy _HOMES
    assert "trainlab.analysis.catalog" in graph["trainlab.cli"] or "trainlab.analysis" in graph["trainlab.cli"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


# docs/architecture.md: a package imports only packages before it
LAYERS = ["allocator", "errors", "faults", "interrupts", "lazy", "stats", "usercode", "capture", "store", "config", "data", "models", "probes", "train",
          "analysis", "study", "report", "cli", "__main__"]
ALLOWED_UPWARDS = {("trainlab.config", "trainlab.models.kinds"), ("trainlab.config", "trainlab.models.presets")}


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "trainlab"


def test_packages_import_only_earlier_layers():
    graph = import_graph()
    assert {_layer(m) for m in graph} - {"trainlab"} == set(LAYERS)  # every package has its place
    upwards = sorted((a, b) for a, targets in graph.items() for b in targets
                     if "trainlab" not in (_layer(a), _layer(b)) and (a, b) not in ALLOWED_UPWARDS
                     and LAYERS.index(_layer(b)) > LAYERS.index(_layer(a)))
    assert upwards == []


MAX_FUNCTION_LINES = 80
MAX_COMPLEXITY = 20  # radon's grade C at most: `radon cc -n D src` prints nothing


def test_functions_are_short_and_simple():
    from radon.complexity import cc_visit

    long, complex_ = [], []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{_module_name(path)}.{node.name}: {lines} lines")
        complex_ += [f"{_module_name(path)}.{block.fullname}: {block.complexity}"
                     for block in cc_visit(text) if block.complexity > MAX_COMPLEXITY]
    assert long == [] and complex_ == []


def test_training_does_not_import_matplotlib():
    code = (
        "import sys, trainlab.train, trainlab.study.executors\n"
        "from trainlab.train import fit\n"
        "fit({'data': {'name': 'digits', 'limit': 200}, 'train': {'epochs': 1},"
        " 'probes': {'embeddings_at': [0, 1]}}, store=None)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib' or m.startswith('trainlab.report')"
        " or m.startswith('trainlab.analysis')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert importlib.util.find_spec("matplotlib") is not None  # it is installed: the test could fail
