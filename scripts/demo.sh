#!/usr/bin/env bash
# Set up, then run the cold-start benchmark at a small size against an embedded
# local S3 server (SeaweedFS), litevfs side by side with Litestream's own VFS.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
unset AWS_CA_BUNDLE || true
bash scripts/setup.sh
VENV="${LITEVFS_VENV:-.venv}"
exec "$VENV/bin/python" benchmarks/coldstart.py --quick "$@"
