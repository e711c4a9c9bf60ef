"""Which core twin ``litevfs._impl`` picks, and that both twins expose the same API.

The selection tests run in a fresh interpreter with a clean environment, so a
``LITEVFS_NO_EXTENSIONS`` set by the caller cannot leak in and an already
imported ``_impl`` cannot hide the choice.
"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import litevfs._pagecache_py as pure

SRC = Path(pure.__file__).resolve().parents[1]  # .../src
PUBLIC = ["IMPLEMENTATION_NAME", "crc64", "decode_page_index", "decode_page_frame",
          "encode_page_frame", "PageIndex", "PageCache"]
SELECTED = ["crc64", "decode_page_index", "decode_page_frame", "encode_page_frame",
            "PageIndex", "PageCache"]  # the names _impl re-exports


@pytest.fixture(scope="module")
def compiled(request: pytest.FixtureRequest):
    if request.config.getoption("--no-compiled"):
        pytest.skip("--no-compiled")
    import litevfs._pagecache as mod  # a missing build must fail here, not fall back

    return mod


def selected_in_subprocess(**env: str) -> str:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),              "PYTHONNOUSERSITE": "1", **env}
    code = ("import litevfs._impl as i; "
            "print(i.IMPLEMENTATION, i.core.__name__, i.core.IMPLEMENTATION_NAME, "
            "i.PageCache.__module__)")
    proc = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.compiled
def test_compiled_twin_is_preferred_by_default(compiled):
    assert selected_in_subprocess() == (
        "cython litevfs._pagecache cython litevfs._pagecache")


@pytest.mark.compiled
def test_zero_does_not_disable_extensions(compiled):
    assert selected_in_subprocess(LITEVFS_NO_EXTENSIONS="0").split()[0] == "cython"


@pytest.mark.parametrize("value", ["1", "yes"])
def test_env_var_forces_the_pure_twin(value):
    assert selected_in_subprocess(LITEVFS_NO_EXTENSIONS=value) == (
        "python litevfs._pagecache_py python litevfs._pagecache_py")


def test_implementation_names():
    assert pure.IMPLEMENTATION_NAME == "python"


@pytest.mark.compiled
def test_compiled_implementation_name(compiled):
    assert compiled.IMPLEMENTATION_NAME == "cython"


def test_impl_reexports_the_core_names():
    import litevfs._impl as impl

    for name in SELECTED:
        assert getattr(impl, name) is getattr(impl.core, name)
    assert impl.IMPLEMENTATION == impl.core.IMPLEMENTATION_NAME


@pytest.mark.compiled
def test_same_public_names(compiled):
    assert sorted(compiled.__all__) == sorted(pure.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(compiled, name) and hasattr(pure, name), name


def shape(obj) -> list[tuple[str, str, object]]:
    """Parameter names, kinds and defaults (annotations differ: Cython has none)."""
    params = list(inspect.signature(obj).parameters.values())
    return [(p.name, p.kind.name.replace("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD"), p.default)
            for p in params]


@pytest.mark.compiled
@pytest.mark.parametrize("name", ["crc64", "decode_page_index", "decode_page_frame",
                                  "encode_page_frame", "PageIndex", "PageCache"])
def test_same_signatures(compiled, name):
    assert shape(getattr(compiled, name)) == shape(getattr(pure, name))


def public_members(cls) -> dict[str, str]:
    out = {}
    for name in dir(cls):
        if name.startswith("_") and name not in ("__len__", "__contains__"):
            continue
        attr = inspect.getattr_static(cls, name)
        out[name] = "property" if isinstance(attr, property) or inspect.isdatadescriptor(attr) \
            else "method"
    return out


@pytest.mark.compiled
@pytest.mark.parametrize("cls", ["PageIndex", "PageCache"])
def test_same_class_members(compiled, cls):
    a, b = getattr(compiled, cls), getattr(pure, cls)
    assert public_members(a) == public_members(b)
    for name, kind in public_members(b).items():
        if kind == "method" and not name.startswith("__"):
            assert shape(getattr(a, name)) == shape(getattr(b, name)), name


def stub_signatures() -> dict[str, list[str]]:
    tree = ast.parse((SRC / "litevfs" / "_pagecache.pyi").read_text())
    out: dict[str, list[str]] = {}

    def params(fn: ast.FunctionDef) -> list[str]:
        return [a.arg for a in fn.args.args]

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = params(node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    out[f"{node.name}.{item.name}"] = params(item)
    return out


def test_stub_matches_pure_twin():
    stub = stub_signatures()
    want: dict[str, list[str]] = {}
    for name in SELECTED:
        obj = getattr(pure, name)
        if inspect.isclass(obj):
            for member, kind in public_members(obj).items():
                fn = inspect.getattr_static(obj, member)
                fn = fn.fget if kind == "property" else fn
                want[f"{name}.{member}"] = list(inspect.signature(fn).parameters)
            want[f"{name}.__init__"] = list(inspect.signature(obj.__init__).parameters)
        else:
            want[name] = list(inspect.signature(obj).parameters)
    assert stub == want
