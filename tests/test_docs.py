"""The README documents every option exactly as the config table defines it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_option_table_is_current():
    spec = importlib.util.spec_from_file_location("options_table", ROOT / "scripts" / "options_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (ROOT / "README.md").read_text()
    assert mod.updated(text) == text, "run: python scripts/options_table.py"


def test_readme_opens_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = "\n".join(lines[:8])
    assert "bash scripts/demo.sh" in block and "bash scripts/test.sh" in block


def test_public_restore_is_the_function_even_after_the_submodule_import():
    import litevfs
    import litevfs.engine.restore  # noqa: F401 - importing the submodule must not rebind the name

    assert callable(litevfs.restore)
