"""What every ``litevfs`` command shares: the parser that reports mistakes in one line,
the help texts, the argument types, the storage options and the command builder."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from typing import Any, NoReturn

from ..config import parse_timeout, parse_wait
from ..errors import ConfigError
from ..engine.timetravel import TimeTravelError, parse_time
from ..ltx.format import parse_txid
from ..storage import open_storage, parse_replica_url
from ..storage.base import StorageClient

URL_HELP = ("replica URL: s3://bucket/path?endpoint=http://host:port&region=..., "
            "file:///absolute/dir, or a directory path")

ENVIRONMENT = """\
replica URLs:
  s3://bucket/path                     AWS S3 (region from AWS_REGION or ?region=)
  s3://bucket/path?endpoint=URL        S3-compatible servers (MinIO, SeaweedFS, R2...);
                                       also region=, forcePathStyle=, skipVerify=
  file:///absolute/dir, or a path      Litestream's file replica layout

S3 credentials, first found wins:
  AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
  LITESTREAM_ACCESS_KEY_ID + LITESTREAM_SECRET_ACCESS_KEY
  the default AWS chain: AWS_PROFILE / ~/.aws/credentials, then instance
  metadata (set AWS_EC2_METADATA_DISABLED=true where there is none)

environment: LITEVFS_CONNECT_TIMEOUT, LITEVFS_READ_TIMEOUT (S3 timeouts),
LITEVFS_LOG_LEVEL or LITESTREAM_LOG_LEVEL (DEBUG also shows tracebacks)."""


class Parser(argparse.ArgumentParser):
    """Command-line mistakes are one line too (not argparse's usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parse_timestamp_arg(text: str) -> float:
    """RFC 3339 or a relative time (``5 minutes ago``, ``yesterday``), as the
    ``litestream_time`` PRAGMA accepts."""
    try:
        return parse_time(text).timestamp()
    except TimeTravelError as exc:
        raise argparse.ArgumentTypeError(f"{exc}: {text!r}") from None


def parse_txid_arg(text: str) -> int:
    try:
        return parse_txid(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_timeout_arg(text: str) -> float:
    try:
        return parse_timeout(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_wait_arg(text: str) -> float:
    try:
        return parse_wait(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def resolve_replica(args: argparse.Namespace) -> None:
    """``--config FILE [--db PATH]``: the replica URL and credentials from Litestream's
    configuration file (as ``litestream replicate -config FILE`` reads it), into
    ``args.url`` and ``args.credentials``; otherwise the URL argument is required."""
    if not hasattr(args, "url") or getattr(args, "credentials", None) is not None:
        return
    args.credentials = {}
    config, db = getattr(args, "config", None), getattr(args, "db", None)
    if config is None and db is None:
        if not args.url:
            raise ConfigError("a replica URL is required (or --config litestream.yml "
                              "--db /path/of/the.db)")
        return
    if args.url:
        raise ConfigError("give either a replica URL or --config, not both")
    from ..storage.lsconfig import replica_from_config  # PyYAML: only when asked for

    args.url, args.credentials = replica_from_config(
        config, db, None, {}, expand_env=not getattr(args, "no_expand_env", False))


def storage_options(args: argparse.Namespace) -> dict[str, Any]:
    """The S3 timeouts given on the command line (unset ones come from the environment:
    ``LITEVFS_CONNECT_TIMEOUT`` / ``LITEVFS_READ_TIMEOUT``) and the credentials of a
    ``--config`` file; none off S3."""
    resolve_replica(args)
    if parse_replica_url(args.url).scheme != "s3":
        return {}
    options = {k: v for k in ("connect_timeout", "read_timeout")
               if (v := getattr(args, k, None)) is not None}
    options.update(getattr(args, "credentials", None) or {})
    return options


def open_from_args(args: argparse.Namespace) -> StorageClient:
    return open_storage(args.url, **storage_options(args))


def say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"litevfs {args.command}: {message}", file=sys.stderr)


def common_arguments() -> argparse.ArgumentParser:
    """Arguments every command that reads a replica takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", nargs="?", help=URL_HELP + " (or --config)")
    ls = common.add_argument_group("Litestream's configuration file (instead of URL)")
    ls.add_argument("--config", "-config", metavar="FILE",
                    help="read the replica URL and credentials from litestream.yml, as "
                         "litestream replicate does ($VAR expanded; LITESTREAM_CONFIG "
                         "when only --db is given)")
    ls.add_argument("--db", "-db", metavar="PATH",
                    help="the database's path in the config file (needed when it lists "
                         "several)")
    ls.add_argument("--no-expand-env", "-no-expand-env", action="store_true",
                    help="do not expand $VAR in the config file (as litestream's flag)")
    s3 = common.add_argument_group("S3 timeouts (each error names the endpoint)")
    s3.add_argument("--connect-timeout", type=parse_timeout_arg, metavar="DURATION",
                    help="connecting to the endpoint (default 3s; LITEVFS_CONNECT_TIMEOUT)")
    s3.add_argument("--read-timeout", type=parse_timeout_arg, metavar="DURATION",
                    help="waiting for the endpoint's answer (default 30s; a timed-out "
                         "request is tried once more; LITEVFS_READ_TIMEOUT)")
    return common



Command = Callable[[str, str, str], argparse.ArgumentParser]


def command_builder(sub: Any, common: argparse.ArgumentParser) -> Command:
    """``command(name, help, description)``: a subcommand parser with the common
    arguments and the environment epilog."""
    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, parents=[common], help=help, description=textwrap.fill(description, 78),
            epilog=ENVIRONMENT,
            formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    return command
