"""The import layering of ``mpanet_tf``: no cycle, no import from a layer above, no unexplained
function-level import. A pure ``ast`` walk of the source (nothing is imported).

The layers, top to bottom (:data:`LAYERS`; a module may import its own layer and any layer below
it, never one above; ``__init__`` is the ``mpanet_tf`` package itself, ``cli`` the ``cli/`` folder
installed as ``mpanet_tf.cli``)::

    cli
     v
    viz
     v
    interop.import_mpanet | search
     v
    quickstart
     v
    training | index
     v
    export | eval
     v
    runtimes
     v
    __init__ | inference
     v
    model
     v
    backbone
     v
    config
     v
    data | interop
     v
    run_folder
     v
    losses | tf_runtime | layers | errors | io

Rules checked on every module of the package and of ``cli/``:

1. no import cycle among project modules (module-level and function-level imports alike);
2. no import of a module in a higher layer than the importer's;
3. a function-level import of a project module carries ``# deferred: <why>`` on its first line,
   and really defers something: the imported module pulls in (at import time, transitively) a
   heavy third-party package (:data:`HEAVY`) that the importing module does not already load.

:data:`PENDING` lists the import edges other branches of the architecture refactor (issue 24)
remove; it is emptied when they land.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mpanet_tf"

#: The layers, top first. Each entry names modules or packages relative to ``mpanet_tf`` (a
#: package covers its submodules); ``__init__`` is the ``mpanet_tf`` package module itself.
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("viz",),
    ("interop.import_mpanet", "search"),
    ("quickstart",),
    ("training", "index"),
    ("export", "eval"),
    ("runtimes",),
    ("__init__", "inference"),
    ("model",),
    ("backbone",),
    ("config",),
    ("data", "interop"),
    ("run_folder",),
    ("losses", "tf_runtime", "layers", "errors", "io"),
]

#: Third-party packages whose import costs enough (TensorFlow/Keras: seconds; the rest: 0.3-2 s,
#: or an optional extra that may be missing) to justify importing a project module inside a
#: function.
HEAVY = frozenset({"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "faiss", "matplotlib",
                   "sklearn", "scipy", "torch"})
#: What importing a heavy package imports with it (Keras 3 runs on the TensorFlow backend here).
BRINGS = {"keras": {"tensorflow"}, "tf2onnx": {"tensorflow", "onnx"}}

#: Import edges (importer, imported) still allowed to break a rule until the other issue-24
#: branches land: ``arch-model`` removes model <-> inference and training.trainer -> weights,
#: ``arch-data`` the three cycles inside ``data/``. The lead empties this list after merging.
PENDING: list[tuple[str, str]] = [
    ("mpanet_tf.data.sysu", "mpanet_tf.data.synthetic"),
    ("mpanet_tf.data.llcm", "mpanet_tf.data.synthetic_llcm"),
    ("mpanet_tf.data.manifest", "mpanet_tf.data.manifest_folders"),
]

DEFERRED = re.compile(r"#\s*deferred:\s*\S")


@dataclass(frozen=True)
class Import:
    """One import of a project module: ``importer`` imports ``target`` at ``line``."""

    importer: str
    target: str
    line: int
    in_function: bool
    source_line: str


def project_modules(root: Path, package: str = PACKAGE, cli: str | None = "cli") -> dict[str, Path]:
    """Module name -> file of every ``.py`` under ``root/package`` (and ``root/cli`` as
    ``package.cli``)."""
    found = {}
    trees = [(root / package, [package])] + ([(root / cli, [package, "cli"])] if cli else [])
    for folder, prefix in trees:
        for path in sorted(folder.rglob("*.py")):
            parts = [*prefix, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _function_level(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside a function (class bodies run at import time)."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return inside


def _targets(node, module: str, is_package: bool, modules) -> list[str]:
    """Project modules an import node names (``from pkg import sub`` names ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".")
            base = base if is_package else base[:-1]
            base = base[:len(base) - node.level + 1]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        names = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                 for alias in node.names]
    targets = []
    for name in names:
        while name and name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in modules and name != module and name not in targets:
            targets.append(name)
    return targets


def _lazy_attributes(tree: ast.Module, module: str, is_package: bool, modules) -> tuple[set[str], list[str]]:
    """(names bound at the top of a module, the project modules its module-level ``__getattr__``
    imports): ``from module import name`` of another name runs that ``__getattr__``."""
    bound, lazy = set(), []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            bound.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            lazy = [t for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))
                    for t in _targets(n, module, is_package, modules)]
    return bound, lazy


def scan(root: Path, package: str = PACKAGE, cli: str | None = "cli"):
    """(imports between project modules, module -> third-party top-level packages it imports at
    import time) for the tree at ``root``.

    ``from package import name``, where ``name`` is served by the package's ``__getattr__``, counts
    as importing what that ``__getattr__`` imports.
    """
    modules = project_modules(root, package, cli)
    trees = {m: ast.parse(p.read_text(encoding="utf-8"), filename=str(p)) for m, p in modules.items()}
    lazy = {m: _lazy_attributes(tree, m, modules[m].name == "__init__.py", modules) for m, tree in trees.items()}
    imports, third_party = [], {}
    for module, path in modules.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = trees[module]
        deferred = _function_level(tree)
        third_party[module] = set()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = _targets(node, module, path.name == "__init__.py", modules)
            if isinstance(node, ast.ImportFrom) and len(targets) == 1 and targets[0] in lazy:
                bound, served = lazy[targets[0]]
                if any(a.name not in bound and f"{targets[0]}.{a.name}" not in modules for a in node.names):
                    targets += [t for t in served if t not in targets and t != module]
            for target in targets:
                imports.append(Import(module, target, node.lineno, id(node) in deferred, lines[node.lineno - 1]))
            if not targets and id(node) not in deferred and not getattr(node, "level", 0):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for top in {n.split(".")[0] for n in names} - {package}:
                    third_party[module].update({top, *BRINGS.get(top, ())})
    return imports, third_party


def heavy_at_import(imports, third_party, heavy=HEAVY) -> dict[str, set[str]]:
    """module -> the heavy packages importing it loads (through module-level imports)."""
    edges: dict[str, set[str]] = {m: set() for m in third_party}
    for imp in imports:
        if not imp.in_function:
            edges[imp.importer].add(imp.target)
    loaded = {}
    for module in edges:
        seen, stack = {module}, [module]
        while stack:
            for target in edges[stack.pop()]:
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        loaded[module] = set().union(*(third_party[m] & heavy for m in seen))
    return loaded


def cycles(imports, allowed=()) -> list[list[str]]:
    """Strongly connected components (of two or more modules) of the import graph, ignoring the
    ``allowed`` edges."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if (imp.importer, imp.target) not in set(allowed):
            graph.setdefault(imp.importer, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):  # Tarjan; the graph is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str, layers, package: str = PACKAGE) -> int | None:
    """Row of ``module`` in ``layers`` (0 = top) by its longest listed prefix, or None."""
    relative = module[len(package) + 1:] if module != package else "__init__"
    best, row = -1, None
    for number, entries in enumerate(layers):
        for entry in entries:
            if (relative == entry or relative.startswith(entry + ".")) and len(entry) > best:
                best, row = len(entry), number
    return row


def violations(root: Path, layers=LAYERS, pending=PENDING, heavy=HEAVY, package: str = PACKAGE,
               cli: str | None = "cli") -> list[str]:
    """One line per broken rule (module docstring) in the tree at ``root``."""
    imports, third_party = scan(root, package, cli)
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(imports, pending)]
    for module in sorted(third_party):
        if layer_of(module, layers, package) is None:
            problems.append(f"{module} is in no layer: add it to LAYERS")
    loaded = heavy_at_import(imports, third_party, heavy)
    for imp in imports:
        if (imp.importer, imp.target) in set(pending):
            continue
        where = f"{imp.importer}:{imp.line}"
        low, high = layer_of(imp.importer, layers, package), layer_of(imp.target, layers, package)
        if low is not None and high is not None and high < low:
            problems.append(f"{where} imports {imp.target} from a higher layer")
    statements: dict[tuple[str, int], list[Import]] = {}
    for imp in imports:
        if imp.in_function and (imp.importer, imp.target) not in set(pending):
            statements.setdefault((imp.importer, imp.line), []).append(imp)
    for (importer, line), group in statements.items():
        first = group[0]
        gained = set().union(*(loaded[imp.target] for imp in group)) - loaded[importer]
        if not DEFERRED.search(first.source_line):
            problems.append(f"{importer}:{line} imports {first.target} inside a function without '# deferred: <why>'"
                            + (f" (it would load {', '.join(sorted(gained))})" if gained else
                               " (it defers nothing heavy: import it at the top)"))
        elif not gained:
            problems.append(f"{importer}:{line} defers {first.target}, which loads nothing heavy that "
                            f"{importer} does not: import it at the top")
    return problems


def render_layers(layers=LAYERS) -> str:
    """The layer diagram of the module docstring."""
    return "\n v\n".join(" | ".join(row) for row in layers)


# ----------------------------------------------------------------------------- the project
def test_the_project_imports_downward_only():
    assert violations(ROOT) == []


def test_pending_edges_still_exist():
    """An edge fixed by another branch leaves PENDING at once (the list only shrinks)."""
    imports, _ = scan(ROOT)
    edges = {(imp.importer, imp.target) for imp in imports}
    assert [edge for edge in PENDING if edge not in edges] == []


def test_the_docstring_shows_the_layers():
    assert textwrap.indent(render_layers(), "    ") in __doc__


def test_every_layer_entry_names_a_module():
    modules = project_modules(ROOT)
    named = {entry: PACKAGE if entry == "__init__" else f"{PACKAGE}.{entry}" for row in LAYERS for entry in row}
    assert [entry for entry, name in named.items()
            if not any(m == name or m.startswith(name + ".") for m in modules)] == []


# ----------------------------------------------------------------------------- the checker
PLANTED_LAYERS = [("top",), ("middle",), ("bottom",)]


def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"__init__.py": "", **files}.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def check(tmp_path, files, pending=()):
    return violations(plant(tmp_path, files), [("__init__",), *PLANTED_LAYERS], list(pending),
                      frozenset({"json"}), package="pkg", cli=None)


def test_checker_accepts_a_downward_tree(tmp_path):
    assert check(tmp_path, {
        "top.py": "from pkg import middle\nfrom pkg.bottom import VALUE\n",
        "middle.py": "import pkg.bottom\n\ndef later():\n    from pkg import heavy  # deferred: json\n",
        "heavy.py": "import json\n",
        "bottom.py": "VALUE = 1\n",
    }) == ["pkg.heavy is in no layer: add it to LAYERS"]


def test_checker_finds_a_planted_cycle(tmp_path):
    found = check(tmp_path, {
        "top.py": "",
        "middle.py": "from pkg import bottom\n",
        "bottom.py": "def f():\n    from . import middle  # deferred: json\n",
    })
    assert "import cycle: pkg.bottom <-> pkg.middle" in found
    assert "pkg.bottom:2 imports pkg.middle from a higher layer" in found


def test_checker_finds_a_cycle_through_three_modules_at_module_level(tmp_path):
    found = check(tmp_path, {
        "top.py": "from pkg import middle\n",
        "middle.py": "from pkg import top\nimport pkg.bottom\n",
        "bottom.py": "from pkg.top import X\n",
    })
    assert "import cycle: pkg.bottom <-> pkg.middle <-> pkg.top" in found


def test_checker_finds_a_planted_upward_import(tmp_path):
    found = check(tmp_path, {"top.py": "", "middle.py": "", "bottom.py": "from pkg.middle import X\n"})
    assert found == ["pkg.bottom:1 imports pkg.middle from a higher layer"]


def test_pending_edges_are_allowed_and_nothing_else(tmp_path):
    files = {"top.py": "", "middle.py": "from pkg import bottom\n", "bottom.py": "import pkg.middle\n"}
    assert check(tmp_path, files, pending=[("pkg.bottom", "pkg.middle")]) == []
    assert check(tmp_path, files, pending=[("pkg.middle", "pkg.bottom")]) != []


def test_checker_wants_function_level_imports_explained_and_useful(tmp_path):
    found = check(tmp_path, {
        "top.py": ("def a():\n    from pkg import middle\n"
                   "def b():\n    from pkg import bottom  # deferred: speed\n"
                   "def c():\n    from pkg import heavy\n"
                   "def d():\n    from pkg import heavy  # deferred: loads json\n"),
        "middle.py": "", "bottom.py": "", "heavy.py": "import json\n",
    })
    assert found == [
        "pkg.heavy is in no layer: add it to LAYERS",
        "pkg.top:2 imports pkg.middle inside a function without '# deferred: <why>' (it defers nothing heavy: "
        "import it at the top)",
        "pkg.top:4 defers pkg.bottom, which loads nothing heavy that pkg.top does not: import it at the top",
        "pkg.top:6 imports pkg.heavy inside a function without '# deferred: <why>' (it would load json)",
    ]


def test_a_deferral_is_useless_when_the_importer_already_loads_the_package(tmp_path):
    found = check(tmp_path, {
        "top.py": "import json\n\ndef a():\n    from pkg import middle  # deferred: json\n",
        "middle.py": "from pkg import bottom\n", "bottom.py": "import json.decoder\n",
    })
    assert found == ["pkg.top:4 defers pkg.middle, which loads nothing heavy that pkg.top does not: "
                     "import it at the top"]


def test_relative_imports_and_packages_resolve(tmp_path):
    found = check(tmp_path, {
        "top.py": "", "middle.py": "",
        "bottom/__init__.py": "from .inner import X\n",
        "bottom/inner.py": "from ..middle import Y\nfrom . import other\n",
        "bottom/other.py": "",
    })
    assert found == ["pkg.bottom.inner:1 imports pkg.middle from a higher layer"]


def test_a_name_served_by_a_lazy_getattr_counts_as_its_import(tmp_path):
    files = {
        "top.py": ("def run():\n    from pkg.middle import slow  # deferred: json, through middle.__getattr__\n"
                   "def other():\n    from pkg.middle import VALUE  # deferred: nothing\n"),
        "middle.py": ("VALUE = 1\n\ndef __getattr__(name):\n"
                      "    from pkg import bottom  # deferred: json\n    return bottom.slow\n"),
        "bottom.py": "import json\n\ndef slow():\n    pass\n",
    }
    assert check(tmp_path, files) == ["pkg.top:4 defers pkg.middle, which loads nothing heavy that pkg.top "
                                      "does not: import it at the top"]
