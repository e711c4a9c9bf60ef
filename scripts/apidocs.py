"""Build the API reference (HTML, from the docstrings) with pdoc.

    python scripts/apidocs.py                 # into docs/api/ (not committed: rebuild it)
    python scripts/apidocs.py -o /tmp/api     # elsewhere
    python scripts/apidocs.py --strict        # any pdoc warning is an error (the test uses this)

It documents the public surface only: the ``litevfs`` package (connect, register, sync,
write_status, export_unsynced, discard_unsynced, hydration_status, stats, restore,
open_storage, the errors), ``litevfs.errors``, ``litevfs.storage`` (open_storage, the
storage interface), ``litevfs.ltx`` (the LTX codec) and ``litevfs.config`` (the
options). The internals (engine, vfs, write, ...) stay out: they are not an API.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Documented modules, in navigation order. A package name alone would pull in all of
# its submodules, so each spec is followed by a pattern that drops them again.
MODULES = ("litevfs", "litevfs.errors", "litevfs.storage", "litevfs.ltx", "litevfs.config")


def module_specs() -> list[str]:
    specs: list[str] = []
    for name in MODULES:
        specs += [name, "!" + name.replace(".", r"\.") + r"\..+"]
    return specs


def resolve_lazy_exports(name: str) -> None:
    """``litevfs`` and ``litevfs.ltx`` export most names through a module
    ``__getattr__`` (importing them eagerly would slow down ``import litevfs``); pdoc
    only reads a module's ``__dict__``, so bind each name of ``__all__`` there first.
    This happens in the docs build only, never on the library's own import path."""
    module = importlib.import_module(name)
    for attr in getattr(module, "__all__", ()):
        if attr not in module.__dict__:
            setattr(module, attr, getattr(module, attr))


def build(out: Path, *, strict: bool = False) -> list[Path]:
    import pdoc
    import pdoc.render

    for name in MODULES:
        resolve_lazy_exports(name)
    pdoc.render.configure(docformat="restructuredtext", show_source=False,
                          footer_text="litevfs API reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*module_specs(), output_directory=out)
    problems = [w for w in caught if issubclass(w.category, UserWarning)
                or "pdoc" in str(w.filename)]
    for w in problems:
        print(f"apidocs: warning: {w.message}", file=sys.stderr)
    if strict and problems:
        raise SystemExit(f"apidocs: {len(problems)} warning(s) while building the API reference")
    pages = sorted(out.rglob("*.html"))
    expected = {out / (m.replace(".", "/") + ".html") for m in MODULES}
    missing = sorted(str(p) for p in expected - set(pages))
    if missing:
        raise SystemExit(f"apidocs: pages not written: {', '.join(missing)}")
    return pages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", default=str(REPO / "docs" / "api"),
                   help="output directory (default: docs/api)")
    p.add_argument("--strict", action="store_true", help="fail on any pdoc warning")
    args = p.parse_args(argv)
    try:
        import pdoc  # noqa: F401
    except ImportError:
        print("apidocs: pdoc is not installed: pip install '.[docs]'", file=sys.stderr)
        return 2
    out = Path(args.output)
    pages = build(out, strict=args.strict)
    print(f"API reference: {len(pages)} pages in {out} (open {out / 'litevfs.html'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
