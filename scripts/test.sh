#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: both core twins, the real
# SeaweedFS S3 server and the real litestream binaries, all on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
unset AWS_CA_BUNDLE || true
bash scripts/setup.sh
VENV="${LITEVFS_VENV:-.venv}"
# Run against the installed wheel (compiled core), not the source tree.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
