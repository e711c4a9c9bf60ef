"""Reliability figures collected by the fault, corruption, fuzz and soak tests.

Tests call ``record("faults_injected", n)`` etc.; at the end of the session the totals
are printed in the terminal summary and written to ``build/reliability-report.json``
(merged with an existing file, so separate runs accumulate per key only when asked).
Registered as a pytest plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_totals: Counter[str] = Counter()
_maxima: dict[str, float] = {}
REPORT = Path(__file__).resolve().parents[2] / "build" / "reliability-report.json"


def record(key: str, n: float = 1) -> None:
    with _lock:
        _totals[key] += n


def record_max(key: str, value: float) -> None:
    with _lock:
        _maxima[key] = max(_maxima.get(key, value), value)


def snapshot() -> dict[str, Any]:
    with _lock:
        return {**dict(sorted(_totals.items())), **dict(sorted(_maxima.items()))}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    figures = snapshot()
    if not figures:
        return
    terminalreporter.section("litevfs reliability figures")
    for key, value in figures.items():
        terminalreporter.write_line(f"{key}: {value:g}" if isinstance(value, float)
                                    else f"{key}: {value}")
    try:
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(json.dumps(figures, indent=1) + "\n")
    except OSError:
        pass
    if os.environ.get("LITEVFS_REPORT_STDOUT"):
        print(json.dumps(figures))
