"""Regenerate the README's option table from litevfs.config.FIELDS.

    python scripts/options_table.py          # rewrite README.md in place
    python scripts/options_table.py --check  # exit 1 if README.md is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def _default(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value >= 1024 and value % 1024 == 0:
        for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
            if value % size == 0:
                return f"{value // size} {unit}"
    if isinstance(value, float):
        return f"{value:g} s"
    if isinstance(value, tuple):
        return ", ".join(_default(v) for v in value)
    return str(value)


def render() -> str:
    from litevfs.config import FIELDS

    rows = ["| keyword / URI parameter | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for f in FIELDS:
        env = ", ".join(f"`{e}`" for e in f.env) or "—"
        default = f"{f.default:g}" if f.parse.__name__ == "parse_share" else _default(f.default)
        rows.append(f"| `{f.name}` | {env} | {default} | {f.doc} |")
    return "\n".join(rows)


def updated(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{render()}\n{END}{tail}"


def main() -> int:
    text = README.read_text()
    new = updated(text)
    if "--check" in sys.argv:
        if new != text:
            print("README.md option table is stale: run python scripts/options_table.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
