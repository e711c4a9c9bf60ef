"""The package's layers, checked from the source (ast only, nothing imported):

    base (errors, config, the core selector, ...) < ltx < storage < engine < write
    < session < vfs < the package facade (with dbapi2) < integrations (SQLAlchemy,
    Django) < cli

Each module may import only from its own layer or lower ones; no runtime import cycle
(imports under ``if TYPE_CHECKING:`` are for annotations and do not count); apsw only in
``vfs/``; boto3/botocore only in ``storage/s3/``; the compiled core and its pure twin
only through the selector ``_impl``. A second test runs the checker on a small package
with deliberately bad imports, so a checker that finds nothing cannot pass unnoticed.
Every module also imports on its own in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "config", "options", "redact", "_version", "_worker", "_pending", "_homes",
              "_impl", "_fsync", "_files", "_pagecache_py", "_pagecache")),
    ("ltx", ("ltx",)),
    ("storage", ("storage",)),
    ("engine", ("engine",)),
    ("write", ("write",)),
    ("session", ("session",)),
    ("vfs", ("vfs",)),
    ("facade", ("__init__", "_coldopen", "dbapi2")),  # the public API; the CLI is built on it
    ("integrations", ("sqlalchemy", "django")),  # other stacks' backends, over the facade
    ("cli", ("cli", "__main__")),
]
ONLY_IN = {  # third-party or private modules -> the only places that may import them
    "apsw": ("vfs",),
    "boto3": ("storage.s3",),
    "botocore": ("storage.s3",),
    "_pagecache": ("_impl",),
    "_pagecache_py": ("_impl",),
}


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts = parts[:-1]  # a subpackage is named by its folder; the top one keeps __init__
    return ".".join(parts)


def _type_checking_block(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(path: Path, package: str) -> list[tuple[str, tuple[str, ...]]]:
    """Every import ``path`` runs (anywhere in the file, functions included; not under
    ``if TYPE_CHECKING:``): (absolute module, names taken from it)."""
    tree = ast.parse(path.read_text())
    mod = module_name(path, path.parents[len(path.relative_to(SRC_ROOTS[package]).parts) - 1])
    is_pkg = path.name == "__init__.py"
    base = mod.split(".")
    if base[-1] == "__init__":
        base = base[:-1]
    elif not is_pkg:
        base = base[:-1]
    out: list[tuple[str, tuple[str, ...]]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_block(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                out.extend((alias.name, ()) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    prefix = base[:len(base) - (child.level - 1)]
                    target = ".".join(prefix + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                out.append((target, tuple(alias.name for alias in child.names)))
            visit(child)

    visit(tree)
    return out


SRC_ROOTS: dict[str, Path] = {}


def check(package_dir: Path) -> list[str]:
    """Every violation of the rules in the module docstring, as readable lines."""
    package = package_dir.name
    SRC_ROOTS[package] = package_dir.parent
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        modules[module_name(path, package_dir.parent)] = path
    # .pyx sources count as modules too (the compiled core)
    for path in package_dir.parent.glob("*.pyx"):
        modules[f"{package}.{path.stem}"] = path

    def layer_of(name: str) -> int | None:
        rel = name[len(package) + 1:] if name.startswith(package + ".") else ""
        for i, (_, prefixes) in enumerate(LAYERS):
            for p in prefixes:
                if rel == p or rel.startswith(p + "."):
                    return i
        return None

    def known(name: str) -> str | None:
        if name == package:
            return f"{package}.__init__"
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if path.suffix != ".py":
            continue
        mine = layer_of(name)
        if mine is None:
            problems.append(f"{name}: in no layer (add it to LAYERS)")
            continue
        graph[name] = set()
        targets = []
        for target, names in runtime_imports(path, package):
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules
                    or f"{target}.{n}.__init__" in modules or (
                        target.startswith(package) and (package_dir.parent / Path(
                            *f"{target}.{n}".split("."))).is_dir())]
            # `from pkg import submodule` depends on the submodule, not on pkg's face
            targets += subs if subs and len(subs) == len(names) else [target] + subs
        for target in targets:
            top = target.split(".")[0]
            if top != package:
                for lib, allowed in ONLY_IN.items():
                    if top == lib and not any(layer_prefix(name, package, a) for a in allowed):
                        problems.append(f"{name}: imports {lib} (only {', '.join(allowed)} may)")
                continue
            leaf = target.split(".")[-1]
            if leaf in ONLY_IN and target.startswith(package + ".") and not any(
                    layer_prefix(name, package, a) for a in ONLY_IN[leaf]):
                problems.append(f"{name}: imports {target} (only {', '.join(ONLY_IN[leaf])} may)")
            dep = known(target)
            if dep is None or dep == name:
                continue
            graph[name].add(dep)
            theirs = layer_of(dep)
            if theirs is not None and theirs > mine:
                problems.append(f"{name} ({LAYERS[mine][0]}) imports {dep} "
                                f"({LAYERS[theirs][0]}): a lower layer reaching up")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def layer_prefix(name: str, package: str, prefix: str) -> bool:
    rel = name[len(package) + 1:]
    return rel == prefix or rel.startswith(prefix + ".")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp) + [sorted(comp)[0]])

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_package_keeps_its_layers() -> None:
    problems = check(SRC / "litevfs")
    assert not problems, "\n".join(problems)


def test_the_checker_finds_bad_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "litevfs"
    for sub in ("ltx", "storage", "storage/s3", "engine", "write", "vfs", "cli"):
        (pkg / sub).mkdir(parents=True, exist_ok=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "_impl.py").write_text("from . import _pagecache_py\n")
    (pkg / "_pagecache_py.py").write_text("")
    (pkg / "ltx" / "format.py").write_text("from ..engine import reader\n")  # reaching up
    (pkg / "engine" / "reader.py").write_text(
        "import apsw\n"  # apsw outside vfs/
        "from .. import _pagecache_py\n"  # the twin outside the selector
        "def f():\n    from . import poller\n")  # a cycle through a function-local import
    (pkg / "engine" / "poller.py").write_text(
        "from typing import TYPE_CHECKING\nfrom . import reader\n"
        "if TYPE_CHECKING:\n    from ..vfs import file\n")  # annotation-only: allowed
    (pkg / "storage" / "fetch.py").write_text("import botocore\n")  # outside storage/s3/
    (pkg / "storage" / "s3" / "client.py").write_text("import botocore\n")  # allowed
    (pkg / "vfs" / "file.py").write_text("import apsw\nfrom ..write import x\n")  # allowed
    (pkg / "stray.py").write_text("")  # in no layer
    problems = check(pkg)
    text = "\n".join(problems)
    assert "litevfs.ltx.format (ltx) imports litevfs.engine.reader (engine)" in text
    assert "litevfs.engine.reader: imports apsw" in text
    assert "litevfs.engine.reader: imports litevfs._pagecache_py" in text
    assert "import cycle: litevfs.engine.poller -> litevfs.engine.reader" in text
    assert "litevfs.storage.fetch: imports botocore" in text
    assert "litevfs.stray: in no layer" in text
    assert len(problems) == 6, text  # nothing else: the allowed imports pass


def _all_modules() -> list[str]:
    pkg = SRC / "litevfs"
    names = [module_name(p, SRC) for p in sorted(pkg.rglob("*.py"))]
    return sorted({n.removesuffix(".__init__") for n in names} - {"litevfs.__main__"})


@pytest.mark.parametrize("module", _all_modules())
def test_every_module_imports_alone(module: str) -> None:
    """In a fresh interpreter, warnings as errors: no module depends on another having
    been imported first (an import-order cycle would show here)."""
    out = subprocess.run([sys.executable, "-W", "error", "-c", f"import {module}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
