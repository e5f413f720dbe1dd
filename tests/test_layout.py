"""The architecture, checked from the source with :mod:`ast` (nothing under test is imported).

Rules (README "## Layout" and STYLE.md):

* The packages of ``hpo`` form layers, in :data:`LAYERS` order; each module imports only its
  own package and the layers before it. ``hpo/__init__.py`` and ``hpo/__main__.py`` sit on
  top and may import any layer (``__main__`` runs the CLI).
* Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``. A
  ``TYPE_CHECKING`` import gets no exception: a lower layer naming an upper layer's type in an
  annotation knows about that layer, so the dependency is real even when it costs nothing at
  run time (a ``Protocol`` in the lower layer says what it needs instead). With strictly
  downward edges no cycle between packages is possible; :func:`package_cycles` checks that
  too, on the same edges, so a broken rule also shows as the cycle it creates.
* The engine imports nothing of ``hpo`` but :mod:`hpo.errors`.
* No module in ``hpo/`` or ``bench/`` takes a private name (``from x import _y``) from another
  module; nothing in ``hpo/`` touches a private module or attribute of Optuna.
* No two modules import each other, directly or through others (:func:`module_cycles`): every
  import counts, as above, ``from package import module`` is an import of the submodule, and
  a package's ``__init__`` importing its own submodules is an import like any other.
* At most :data:`MAX_TOP_LEVEL` modules sit at ``hpo/``'s top level and at most
  :data:`MAX_ENGINE_TOP_LEVEL` at ``hpo/engine/``'s (``__init__.py`` counts there).
* Every package below ``hpo`` says what it offers: its ``__init__.py`` defines ``__all__``.
* No function or method in ``hpo/`` is over :data:`MAX_FUNCTION_LINES` lines (``def`` line
  to last line, decorators excluded).
* Loading a study YAML imports neither SQLAlchemy nor the storage, study or worker layers.
* The README's layout block lists exactly the packages and modules that exist.

The checkers take the repository root, so the tests at the bottom run them on small
synthetic trees too: each rule is shown to pass a clean tree and to catch a broken one.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (
    "errors", "engine", "config", "storage", "study", "objective", "worker", "analysis", "cli",
)
TOP = "(top)"  # hpo/__init__.py, hpo/__main__.py: above every layer
MAX_TOP_LEVEL = 4
MAX_ENGINE_TOP_LEVEL = 6
MAX_FUNCTION_LINES = 80
# Attributes that only Optuna's objects have, private there (Study._storage, Trial._trial_id,
# RDBStorage._get_trials, ...): no object of ours is allowed to spell them either.
OPTUNA_PRIVATE_ATTRS = frozenset({
    "_storage", "_trial_id", "_study_id", "_backend", "_get_trials", "_get_stale_trial_ids",
})
_SKIP_DIRS = {"__pycache__"}


# ----------------------------------------------------------------------------------------
# Reading the source
@dataclass(frozen=True)
class Import:
    """One imported module, as the importing file spells it, resolved to a dotted name."""

    path: str  # the importing file, relative to the root
    line: int
    module: str  # the importing module
    target: str  # the module imported (the submodule for ``from package import module``)
    names: tuple[str, ...]  # the names a ``from ... import`` spells; () for ``import target``
    type_checking: bool

    def __str__(self) -> str:
        taken = f" ({', '.join(self.names)})" if self.names else ""
        where = " [TYPE_CHECKING]" if self.type_checking else ""
        return f"{self.path}:{self.line}: {self.module} -> {self.target}{taken}{where}"


def python_files(root: Path, top: str) -> Iterator[Path]:
    """Every ``.py`` file under ``root/top``, sorted."""
    base = root / top
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield Path(dirpath) / name


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below ``node``, with whether it sits under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, type_checking
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_checking
                yield from _walk(stmt, type_checking)
            continue
        yield child, type_checking
        yield from _walk(child, type_checking)


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports_of(root: Path, path: Path, known: set[str]) -> list[Import]:
    """The imports of one file (all of them: module level, functions, ``TYPE_CHECKING``).

    Args:
        known: dotted names of the modules in the tree, to tell ``from pkg import module``
            (an import of ``pkg.module``) from ``from pkg import name``.
    """
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    rel = str(path.relative_to(root))
    out = []
    for node, tc in _walk(parse(path)):
        if isinstance(node, ast.Import):
            out += [Import(rel, node.lineno, name, a.name, (), tc) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            plain = tuple(a.name for a in node.names if f"{target}.{a.name}" not in known)
            out += [
                Import(rel, node.lineno, name, f"{target}.{a.name}", (a.name,), tc)
                for a in node.names if f"{target}.{a.name}" in known
            ]
            if plain or not node.names:
                out.append(Import(rel, node.lineno, name, target, plain, tc))
    return out


def all_imports(root: Path, top: str = "hpo") -> list[Import]:
    files = list(python_files(root, top))
    known = {module_name(root, p) for p in files}
    return [imp for p in files for imp in imports_of(root, p, known)]


def layer(module: str) -> str | None:
    """The layer of a dotted module name: ``hpo.engine.train`` -> ``engine``; ``hpo`` and
    ``hpo.__main__`` -> :data:`TOP`; None outside ``hpo``."""
    parts = module.split(".")
    if parts[0] != "hpo":
        return None
    if len(parts) == 1 or parts[1] == "__main__":
        return TOP
    return parts[1]


def _rank(name: str) -> int:
    return len(LAYERS) if name == TOP else LAYERS.index(name) if name in LAYERS else -1


# ----------------------------------------------------------------------------------------
# The checkers: each returns what is wrong, one line per finding (empty: the rule holds)
def layering_violations(root: Path) -> list[str]:
    """Imports of a later layer (or of a package that is no layer at all)."""
    found = []
    for imp in all_imports(root):
        src, dst = layer(imp.module), layer(imp.target)
        if dst is None or src == dst:
            continue
        if src not in LAYERS and src != TOP:
            found.append(f"{imp}: hpo/{src} is not a layer (known: {', '.join(LAYERS)})")
        elif dst not in LAYERS and dst != TOP:
            found.append(f"{imp}: hpo/{dst} is not a layer (known: {', '.join(LAYERS)})")
        elif _rank(dst) >= _rank(src):
            found.append(f"{imp}: {src} may import only {', '.join(LAYERS[: _rank(src)])}")
    return found


def package_cycles(root: Path) -> list[str]:
    """Groups of packages that import each other, directly or through others."""
    edges: dict[str, set[str]] = {}
    for imp in all_imports(root):
        src, dst = layer(imp.module), layer(imp.target)
        if src is not None and dst is not None and src != dst:
            edges.setdefault(src, set()).add(dst)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reachable = {p: reach(p) for p in edges}
    groups = {
        tuple(sorted(q for q in reachable if q in reachable[p] and p in reachable[q]))
        for p in reachable if p in reachable[p]
    }
    return [" <-> ".join(g) for g in sorted(groups)]


def module_cycles(root: Path) -> list[str]:
    """Modules of ``hpo`` that import each other, directly or through others: one line per
    group (strongly connected component), showing one cycle through it, with the lines."""
    files = list(python_files(root, "hpo"))
    known = {module_name(root, p) for p in files}
    edges: dict[str, dict[str, Import]] = {m: {} for m in known}
    for imp in all_imports(root):
        if imp.target in known and imp.target != imp.module:
            edges[imp.module].setdefault(imp.target, imp)
    found = []
    for group in _strongly_connected(edges):
        if len(group) < 2:
            continue
        start = min(group)
        path = _shortest_cycle(start, group, edges)
        steps = [edges[a][b] for a, b in zip(path, path[1:])]
        more = sorted(group - set(path))
        also = f" (the group also holds {', '.join(more)})" if more else ""
        found.append(" -> ".join(path) + also + "".join(f"\n    {s}" for s in steps))
    return sorted(found)


def _strongly_connected(edges: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the import graph may be deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _shortest_cycle(start: str, group: set[str], edges: dict[str, dict[str, Import]]) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``group`` (breadth first)."""
    came_from: dict[str, str] = {}
    todo = [start]
    while todo:
        nxt = []
        for node in todo:
            for child in sorted(edges[node]):
                if child not in group:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child not in came_from:
                    came_from[child] = node
                    nxt.append(child)
        todo = nxt
    raise AssertionError(f"{start} is in no cycle of {sorted(group)}")


def engine_violations(root: Path) -> list[str]:
    return [
        f"{imp}: the engine imports nothing of hpo but hpo.errors"
        for imp in all_imports(root)
        if layer(imp.module) == "engine" and layer(imp.target) not in (None, "engine", "errors")
    ]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_name_imports(root: Path, tops: tuple[str, ...] = ("hpo", "bench")) -> list[str]:
    """``from x import _y``: a private name taken from another module."""
    found = []
    for top in tops:
        if not (root / top).is_dir():
            continue
        for imp in all_imports(root, top):
            found += [f"{imp}: {n} is private" for n in imp.names if _private(n)]
    return found


_OPTUNA_PRIVATE_MODULE = re.compile(r"^optuna(\.\w+)*\._\w+")


def optuna_private_uses(root: Path) -> list[str]:
    """Private modules of Optuna (imported, or named in a string such as a logger name),
    private names imported from it, and the private attributes of its objects."""
    found = []
    for imp in all_imports(root):
        if imp.target.split(".")[0] != "optuna":
            continue
        if _OPTUNA_PRIVATE_MODULE.match(imp.target):
            found.append(f"{imp}: private Optuna module")
        found += [f"{imp}: private Optuna name {n}" for n in imp.names if _private(n)]
    for path in python_files(root, "hpo"):
        rel = path.relative_to(root)
        for node, _ in _walk(parse(path)):
            if isinstance(node, ast.Attribute) and node.attr in OPTUNA_PRIVATE_ATTRS:
                found.append(f"{rel}:{node.lineno}: .{node.attr} (private to Optuna)")
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and _OPTUNA_PRIVATE_MODULE.match(node.value)):
                found.append(f"{rel}:{node.lineno}: {node.value!r} names a private module")
    return found


def top_level_modules(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "hpo").glob("*.py"))


def engine_top_level_modules(root: Path) -> list[str]:
    """The modules directly in ``hpo/engine/`` (``__init__.py`` included)."""
    return sorted(p.name for p in (root / "hpo" / "engine").glob("*.py"))


def _defines_all(tree: ast.Module) -> bool:
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign)
            else [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def packages_without_all(root: Path) -> list[str]:
    """The ``__init__.py`` of every package below ``hpo`` that does not define ``__all__``."""
    return [
        f"{path.relative_to(root)}: defines no __all__ (what does the package offer?)"
        for path in python_files(root, "hpo")
        if path.name == "__init__.py" and path.parent != root / "hpo"
        and not _defines_all(parse(path))
    ]


def long_functions(root: Path) -> list[str]:
    """Functions and methods over :data:`MAX_FUNCTION_LINES` lines, ``def`` to last line."""
    found = []
    for path in python_files(root, "hpo"):
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(
                        f"{path.relative_to(root)}:{node.lineno}: {node.name} is {lines} lines "
                        f"(at most {MAX_FUNCTION_LINES})"
                    )
    return found


def layout_entries(readme: str) -> set[str]:
    """The paths in the README's "## Layout" block: ``hpo/``, ``hpo/engine/``,
    ``hpo/engine/spec.py``, ``bench/``, ... (directories end with ``/``).

    The block is the indented text after the heading; an entry is a line whose first word is a
    directory (``name/``) or a file (``name.ext``); its indentation nests it under the entry
    above with less. Other lines continue a description.
    """
    match = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    if match is None:
        return set()
    stack: list[tuple[int, str]] = []
    entries = set()
    for raw in match.group(1).splitlines():
        if not raw.startswith("    ") or not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip())
        word = raw.split()[0]
        if not re.fullmatch(r"[\w.-]+/|[\w-]+\.\w+", word):
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        path = parent + word
        entries.add(path)
        if word.endswith("/"):
            stack.append((indent, path))
    return entries


def tree_entries(root: Path) -> set[str]:
    """Every package directory and module under ``hpo/`` (``__init__.py`` files aside: the
    directory stands for them), as :func:`layout_entries` spells them."""
    out = {"hpo/"}
    for path in python_files(root, "hpo"):
        rel = path.relative_to(root)
        for i in range(1, len(rel.parts) - 1):
            out.add("/".join(rel.parts[: i + 1]) + "/")
        if path.name != "__init__.py":
            out.add(rel.as_posix())
    return out


def layout_mismatch(root: Path) -> list[str]:
    listed = layout_entries((root / "README.md").read_text(encoding="utf-8"))
    tree = tree_entries(root)
    hpo_listed = {e for e in listed if e.startswith("hpo/")}
    found = [f"not in the README layout: {e}" for e in sorted(tree - hpo_listed)]
    found += [
        f"in the README layout but not in the tree: {e}"
        for e in sorted(listed)
        if (e.startswith("hpo/") and e not in tree) or not (root / e).exists()
    ]
    return found


# ----------------------------------------------------------------------------------------
# The rules, on this repository
def _report(found: list[str]) -> str:
    return "\n".join(["", *found])


def test_each_layer_imports_only_the_layers_before_it():
    assert layering_violations(ROOT) == [], _report(layering_violations(ROOT))


def test_no_cycles_between_packages():
    assert package_cycles(ROOT) == [], _report(package_cycles(ROOT))


def test_the_engine_imports_only_errors():
    assert engine_violations(ROOT) == [], _report(engine_violations(ROOT))


def test_no_private_names_taken_from_other_modules():
    assert private_name_imports(ROOT) == [], _report(private_name_imports(ROOT))


def test_no_private_optuna_modules_or_attributes():
    assert optuna_private_uses(ROOT) == [], _report(optuna_private_uses(ROOT))


def test_few_top_level_modules():
    assert len(top_level_modules(ROOT)) <= MAX_TOP_LEVEL, top_level_modules(ROOT)


def test_few_top_level_engine_modules():
    found = engine_top_level_modules(ROOT)
    assert len(found) <= MAX_ENGINE_TOP_LEVEL, found


def test_no_cycles_between_modules():
    assert module_cycles(ROOT) == [], _report(module_cycles(ROOT))


def test_every_package_defines_all():
    assert packages_without_all(ROOT) == [], _report(packages_without_all(ROOT))


def test_no_long_functions():
    assert long_functions(ROOT) == [], _report(long_functions(ROOT))


def test_loading_a_study_yaml_imports_no_storage():
    code = (
        "import sys; from hpo.config import load_study_config; "
        "load_study_config('study_configs/quickstart.yaml'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0]=='sqlalchemy' "
        "or m.startswith(('hpo.storage','hpo.study','hpo.worker'))))"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_readme_layout_matches_the_tree():
    assert layout_mismatch(ROOT) == [], _report(layout_mismatch(ROOT))


# ----------------------------------------------------------------------------------------
# The checkers, on synthetic trees
CLEAN = {
    "hpo/__init__.py": '"""top"""\n__version__ = "1"\n',
    "hpo/__main__.py": "from hpo.cli import main\nmain()\n",
    "hpo/errors.py": "class HpoError(Exception):\n    pass\n",
    "hpo/engine/__init__.py": '"""engine"""\nfrom .train import go\n__all__ = ["go"]\n',
    "hpo/engine/train.py": "from hpo.errors import HpoError\nfrom . import spec\n",
    "hpo/engine/spec.py": (  # a function of exactly MAX_FUNCTION_LINES lines, decorated
        "import functools\nimport torch\n@functools.cache\n@staticmethod\ndef spec():\n"
        + "    x = 1\n" * (MAX_FUNCTION_LINES - 2) + "    return x\n"
    ),
    "hpo/config/__init__.py": 'from hpo.config.study import load\n__all__ = ["load"]\n',
    "hpo/config/study.py": (
        "from typing import TYPE_CHECKING\nfrom hpo.engine.spec import spec\n"
        "from hpo.config import yamlfile\nif TYPE_CHECKING:\n    from hpo.errors import X\n"
    ),
    "hpo/config/yamlfile.py": "import yaml\nfrom hpo.errors import HpoError\n",
    "hpo/storage/__init__.py": "__all__: list[str] = []\n",
    "hpo/storage/rdb.py": (
        "import optuna\nfrom optuna.storages import RDBStorage\n"
        "def f(s):\n    from hpo.config.study import X\n    return s.get_trial(1)\n"
    ),
    "hpo/cli/__init__.py": (
        "from hpo.storage import rdb\nfrom hpo.config.study import load\n__all__ = ('main',)\n"
        "def main():\n    pass\n"
    ),
    "bench/run.py": "from bench.helpers import measure\nfrom hpo.engine.train import go\n",
    "bench/helpers.py": "def measure():\n    pass\n",
    "README.md": (
        "# x\n\n## Layout\n\n    hpo/\n      __main__.py     python -m hpo\n"
        "      errors.py       the root\n"
        "      engine/         training;\n                      knows nothing of Optuna\n"
        "        spec.py       specs\n        train.py      loop\n      config/\n"
        "        study.py      typed\n        yamlfile.py   YAML\n      storage/\n"
        "        rdb.py        storage\n      cli/            parse\n"
        "    bench/            benchmarks\n\n## Next\n\n    hpo/\n      nothing.py\n"
    ),
}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return _tree(tmp_path, CLEAN)


def test_a_clean_tree_passes_every_checker(clean):
    assert layering_violations(clean) == []
    assert package_cycles(clean) == []
    assert engine_violations(clean) == []
    assert private_name_imports(clean) == []
    assert optuna_private_uses(clean) == []
    assert top_level_modules(clean) == ["__init__.py", "__main__.py", "errors.py"]
    assert layout_mismatch(clean) == []
    assert module_cycles(clean) == []  # hpo.config imports its submodule hpo.config.study
    assert engine_top_level_modules(clean) == ["__init__.py", "spec.py", "train.py"]
    assert packages_without_all(clean) == []
    assert long_functions(clean) == []  # spec() is MAX_FUNCTION_LINES long, decorators aside


def test_imports_are_read_everywhere_and_resolved(clean):
    imps = {(i.module, i.target, i.type_checking) for i in all_imports(clean)}
    assert ("hpo.engine.train", "hpo.engine.spec", False) in imps  # relative, a submodule
    assert ("hpo.config.study", "hpo.errors", True) in imps  # under TYPE_CHECKING
    assert ("hpo.storage.rdb", "hpo.config.study", False) in imps  # inside a function
    assert ("hpo.cli", "hpo.storage.rdb", False) in imps  # from package import module


@pytest.mark.parametrize("where, code", [
    ("hpo/config/study.py", "from hpo.storage.rdb import mask_url\n"),
    ("hpo/config/study.py", "def f():\n    from hpo.study.create import x\n"),
    ("hpo/config/study.py", "if TYPE_CHECKING:\n    from hpo.cli import main\n"),
    ("hpo/errors.py", "import hpo.engine.spec\n"),
    ("hpo/engine/spec.py", "import hpo\n"),
    ("hpo/storage/rdb.py", "from hpo import cli\n"),
    ("hpo/storage/rdb.py", "from hpo.service.x import y\n"),
])
def test_an_upward_import_is_a_layering_violation(clean, where, code):
    path = clean / where
    path.write_text(path.read_text() + code)
    found = layering_violations(clean)
    assert len(found) == 1 and found[0].startswith(where), found


def test_a_cycle_between_packages_is_found(clean):
    (clean / "hpo/engine/spec.py").write_text("from hpo.config import study\n")
    assert package_cycles(clean) == ["config <-> engine"]
    (clean / "hpo/config/yamlfile.py").write_text("from hpo.storage.rdb import x\n")
    assert package_cycles(clean) == ["config <-> engine <-> storage"]


def test_the_engine_may_import_errors_only(clean):
    (clean / "hpo/engine/spec.py").write_text("def f():\n    import hpo.config.study\n")
    (clean / "hpo/engine/train.py").write_text("from hpo.errors import HpoError\n")
    found = engine_violations(clean)
    assert len(found) == 1 and "hpo.config.study" in found[0]


@pytest.mark.parametrize("where, code", [
    ("hpo/storage/rdb.py", "from hpo.config.study import _helper\n"),
    ("hpo/cli/__init__.py", "from hpo.storage import _rdb_bits\n"),
    ("hpo/engine/train.py", "from . import _native\n"),
    ("bench/run.py", "from bench.helpers import _clock\n"),
    ("bench/run.py", "from numpy.linalg import _umath_linalg\n"),
])
def test_a_private_name_import_is_found(clean, where, code):
    path = clean / where
    path.write_text(path.read_text() + code)
    found = private_name_imports(clean)
    assert len(found) == 1 and found[0].startswith(where), found


def test_dunder_names_and_public_names_of_private_modules_are_fine(clean):
    (clean / "bench/run.py").write_text("from hpo import __version__\nfrom x._y import z\n")
    assert private_name_imports(clean) == []


@pytest.mark.parametrize("code", [
    "from optuna.storages._rdb.storage import RDBStorage\n",
    "import optuna.storages._heartbeat\n",
    "from optuna.storages import _rdb\n",
    "from optuna.study import _optimize\n",
    "def f():\n    from optuna.storages._rdb import models\n",
    "def f(study):\n    return study._storage\n",
    "def f(trial):\n    return trial._trial_id\n",
    "def f(s):\n    return s._get_trials(deepcopy=False)\n",
    "def f(s):\n    return s._backend\n",
    "import logging\nlog = logging.getLogger('optuna.storages._in_memory')\n",
])
def test_private_optuna_is_found(clean, code):
    path = clean / "hpo/storage/rdb.py"
    path.write_text(path.read_text() + code)
    found = optuna_private_uses(clean)
    assert len(found) == 1 and found[0].startswith("hpo/storage/rdb.py"), found


def test_public_optuna_is_fine(clean):
    path = clean / "hpo/storage/rdb.py"
    path.write_text(path.read_text() + (
        "from optuna.storages import RetryFailedTrialCallback\n"
        "def f(study):\n    return study.get_trials(deepcopy=False), study._name_of_ours\n"
    ))
    assert optuna_private_uses(clean) == []


def test_the_top_level_count(clean):
    for name in ("a", "b"):
        (clean / f"hpo/{name}.py").write_text("")
    assert len(top_level_modules(clean)) == 5 > MAX_TOP_LEVEL


def test_the_layout_block_is_read_as_a_tree():
    entries = layout_entries(CLEAN["README.md"])
    assert entries == {
        "hpo/", "hpo/__main__.py", "hpo/errors.py", "hpo/engine/", "hpo/engine/spec.py",
        "hpo/engine/train.py", "hpo/config/", "hpo/config/study.py", "hpo/config/yamlfile.py",
        "hpo/storage/", "hpo/storage/rdb.py", "hpo/cli/", "bench/",
    }  # "knows" continues a description; the next section's block is not read


def test_a_layout_out_of_date_is_found(clean):
    (clean / "hpo/engine/data.py").write_text("")
    (clean / "hpo/storage/rdb.py").unlink()
    (clean / "bench/run.py").unlink()
    (clean / "bench/helpers.py").unlink()
    (clean / "bench").rmdir()
    assert layout_mismatch(clean) == [
        "not in the README layout: hpo/engine/data.py",
        "in the README layout but not in the tree: bench/",
        "in the README layout but not in the tree: hpo/storage/rdb.py",
    ]


@pytest.mark.parametrize("where, code, cycle", [
    ("hpo/engine/spec.py", "import hpo.engine.train\n", "hpo.engine.spec -> hpo.engine.train"),
    ("hpo/engine/spec.py", "from hpo.engine import train\n",  # the submodule, not the package
     "hpo.engine.spec -> hpo.engine.train"),
    ("hpo/engine/spec.py", "from .train import go\n", "hpo.engine.spec -> hpo.engine.train"),
    ("hpo/engine/spec.py", "def f():\n    from hpo.engine.train import go\n",
     "hpo.engine.spec -> hpo.engine.train"),
    ("hpo/engine/spec.py",
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hpo.engine.train import go\n",
     "hpo.engine.spec -> hpo.engine.train"),
    ("hpo/engine/spec.py", "from hpo.engine import go\n",  # the package's __init__ is a module
     "hpo.engine -> hpo.engine.train -> hpo.engine.spec"),
    ("hpo/config/yamlfile.py", "def f():\n    from hpo.config import load\n",
     "hpo.config -> hpo.config.study -> hpo.config.yamlfile"),
    ("hpo/errors.py", "def f():\n    import hpo.cli\n",  # across packages, four modules
     "hpo.cli -> hpo.config.study -> hpo.errors"),
])
def test_a_cycle_between_modules_is_found(clean, where, code, cycle):
    path = clean / where
    path.write_text(path.read_text() + code)
    found = module_cycles(clean)
    assert len(found) == 1, found
    members = cycle.split(" -> ")
    assert found[0].splitlines()[0].split(" (")[0] == " -> ".join([*members, members[0]]), found
    assert any(line.strip().startswith(where) for line in found[0].splitlines()[1:]), found


def test_a_cycle_names_the_rest_of_its_group(clean):
    path = clean / "hpo/errors.py"
    path.write_text(path.read_text() + "def f():\n    import hpo.cli\n")
    assert [f.splitlines()[0] for f in module_cycles(clean)] == [
        "hpo.cli -> hpo.config.study -> hpo.errors -> hpo.cli"
        " (the group also holds hpo.config.yamlfile, hpo.storage.rdb)"
    ]


def test_separate_module_cycles_are_reported_apart(clean):
    # the two shapes of this repository's cycles before issue 19: three modules in a ring,
    # and two modules, one importing the other inside a function
    _tree(clean, {
        "hpo/config/samplers.py": "from hpo.config.study import X\n",
        "hpo/config/schema.py": "from hpo.config import samplers\n",
        "hpo/config/study.py": "from hpo.config.schema import check\n",
        "hpo/objective/__init__.py": "__all__ = []\n",
        "hpo/objective/probe.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from hpo.objective.train import T\n",
        "hpo/objective/train.py": "def f():\n    from hpo.objective.probe import p\n",
    })
    assert [f.splitlines()[0] for f in module_cycles(clean)] == [
        "hpo.config.samplers -> hpo.config.study -> hpo.config.schema -> hpo.config.samplers",
        "hpo.objective.probe -> hpo.objective.train -> hpo.objective.probe",
    ]


def test_the_engine_top_level_count(clean):
    for name in ("a", "b", "c"):
        (clean / f"hpo/engine/{name}.py").write_text("")
    assert len(engine_top_level_modules(clean)) == MAX_ENGINE_TOP_LEVEL
    (clean / "hpo/engine/d.py").write_text("")
    (clean / "hpo/engine/sub").mkdir()
    (clean / "hpo/engine/sub/__init__.py").write_text("__all__ = []\n")  # not at the top
    assert len(engine_top_level_modules(clean)) == MAX_ENGINE_TOP_LEVEL + 1


@pytest.mark.parametrize("where, text", [
    ("hpo/storage/__init__.py", ""),
    ("hpo/storage/__init__.py", '"""A docstring is not enough."""\n'),
    ("hpo/storage/__init__.py", "def f():\n    __all__ = ['x']\n"),  # not at module level
    ("hpo/engine/data/__init__.py", "from .idx import read\n"),  # a sub-package
])
def test_a_package_without_all_is_found(clean, where, text):
    _tree(clean, {where: text})
    assert packages_without_all(clean) == [
        f"{where}: defines no __all__ (what does the package offer?)"
    ]


def test_the_top_package_needs_no_all(clean):
    (clean / "hpo/__init__.py").write_text('"""top"""\n')
    assert packages_without_all(clean) == []


@pytest.mark.parametrize("code, name", [
    ("def g():\n" + "    x = 1\n" * MAX_FUNCTION_LINES, "g"),
    ("class C:\n    @property\n    def m(self):\n" + "        x = 1\n" * MAX_FUNCTION_LINES,
     "m"),
    ("async def a():\n" + "    x = 1\n" * MAX_FUNCTION_LINES, "a"),
    ("def outer():\n    def inner():\n" + "        x = 1\n" * MAX_FUNCTION_LINES
     + "    return inner\n", "inner"),
])
def test_a_long_function_is_found(clean, code, name):
    path = clean / "hpo/storage/rdb.py"
    path.write_text(path.read_text() + code)
    found = [f for f in long_functions(clean) if f" {name} is " in f]
    assert len(found) == 1 and found[0].startswith("hpo/storage/rdb.py:"), long_functions(clean)
    assert f"is {MAX_FUNCTION_LINES + 1} lines" in found[0], found
