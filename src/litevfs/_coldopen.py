"""The first steps of ``litevfs.connect``, before apsw and the VFS load: resolve the
options, open the storage client and send the open's LIST, with the restore plan's
index reads sent by the LIST's own thread the moment it answers (``engine/openahead``).
Only light modules are imported here: every millisecond spent before the LIST is on the
wire delays the first row by as much.
"""

from __future__ import annotations

import os
import sys

from .config import Config
from .engine.machineindex import MachineIndexes
from .engine.openahead import SHARED_BOOT_SET, OpenAhead
from .storage import open_storage_for, start_listing

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from typing import Any


def start_open(url: str | None, options: dict[str, Any]) -> Any:
    """(config, storage, listing future, index reads ahead) with the open's LIST in
    flight, or None when the replica is already open in this process or the options
    do not resolve (the regular path then reports the error)."""
    try:
        keywords = dict(options)
        if url is not None:
            keywords["replica_url"] = url
        config = Config.resolve(keywords, None, os.environ)
        session = sys.modules.get("litevfs.session")  # loaded once a replica was opened
        if session is not None and session.is_open(config.replica_url):
            return None  # shared with an open replica: no LIST needed
        storage = open_storage_for(config)
    except Exception:  # noqa: BLE001 - the regular open raises it, named
        return None
    try:
        # The LIST's thread sends the plan's index reads as soon as it answers (they
        # would otherwise wait for the imports that follow); a persistent cache may hold
        # the indexes already, so with one the open reads them the usual way.
        ahead = OpenAhead(MachineIndexes.for_config(config)) if config.cache_dir is None \
            else None
        listing = start_listing(storage, None if ahead is None else
                                lambda levels: ahead.start(storage, levels))
        storage.wait_sent(0.05)  # let the LIST thread write its request first
        if ahead is not None and config.boot_set == "shared":
            ahead.fetch_object(storage, SHARED_BOOT_SET)  # in the LIST's round trip
        storage.preconnect(2)  # ready for the index reads once the LIST answers
        return config, storage, listing, ahead
    except BaseException:
        storage.close()
        raise

