#!/usr/bin/env bash
# Create ./.venv (if needed) and install litevfs with its test tools from PyPI.
# The compiled core is built by the install; a build failure fails the setup.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LITEVFS_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q ".[test]"
"$VENV/bin/python" -c "import litevfs; print('litevfs', litevfs.__version__, 'core:', litevfs.IMPLEMENTATION)"
