"""The composition root: the one place that builds a replica's collaborators, wires
them, opens and closes them, and shares them between the connections of a process.

A :class:`Replica` is what ``session`` builds for one replica URL (and core
implementation): the shared state, the view builder, the verifier, the reader, the
optional persistent cache, boot set, hydrator and writer, the poller and the
metrics. Every collaborator gets the narrow things it uses from here; none of them
knows this class. The VFS layer (``vfs/``) holds a Replica per open file.

Order of an open (each step overlaps the LIST already on the wire): storage (metered)
-> state -> disk cache -> verifier -> views -> reader -> boot set replay -> first view
-> write state (write mode), or the read-only member of the machine's shared state ->
poller -> hydrator. Close runs it backwards; the
writer's final sync comes first and its error is raised after everything is closed.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

from . import _impl
from ._pending import Pending
from .config import Config
from .ltx.format import FileInfo
from .engine.bootset import BootSet, start_boot
from .engine.diskcache import open_disk_cache
from .engine.freshness import Freshness
from .engine.metrics import Metrics
from .engine.machineindex import MachineIndexes
from .engine.openahead import SHARED_BOOT_SET, OpenAhead
from .engine.poller import Poller
from .engine.reader import Reader
from .engine.state import ReplicaState, View
from .engine.tops import TreeTops
from .engine.verify import Verifier
from .engine.views import ViewBuilder
from .storage import open_storage_for, start_listing
from .storage.base import StorageClient
from .storage.metered import MeteredStorage

if TYPE_CHECKING:
    from .engine.diskstore import ReplicaDiskCache
    from .engine.hydrate.hydrator import Hydrator
    from .engine.keyahead import KeyAhead
    from .write.readpoll import ReaderPolls
    from .write.writer import Writer


class Replica:
    """One replica opened in this process, shared by every connection to it."""

    def __init__(self, config: Config, storage: StorageClient, impl: ModuleType = _impl,
                 ahead: OpenAhead | None = None) -> None:
        self.metrics = Metrics()
        self.storage: StorageClient = MeteredStorage(storage, self.metrics.timer)
        self.state = ReplicaState(config, self.storage, impl)
        self.disk: ReplicaDiskCache | None = open_disk_cache(config, storage.url)
        self.verifier = Verifier(self.state, self.disk)
        # without a cache_dir, big page indexes are kept for the machine (machineindex.py)
        machine = None if self.disk is not None else (
            ahead.indexes if ahead is not None else MachineIndexes.for_config(config))
        self.views = ViewBuilder(self.state, self.verifier, self.disk, ahead, machine)
        self.verifier.hints = self.views.hints  # it publishes what the views learned
        self.reader = Reader(self.state, self.verifier, self.disk)
        self.verifier.busy = self.reader.busy  # background checks yield to queries
        self.verifier.query_bytes = lambda: self.reader.bytes_fetched  # and spend a share
        self.tops = TreeTops(self.reader)  # plan-aware prefetch (vfs/statements.py)
        self._keyahead: KeyAhead | None = None  # key-driven prefetch of joins (same)
        self._keyahead_lock = threading.Lock()
        self.boot: BootSet | None = None
        self.freshness: Freshness | None = None
        self.poller: Poller | None = None
        self._hydrator: Hydrator | None = None
        self.writer: Writer | None = None
        self.joining: Joining | None = None  # a read-only member joining (join_machine)
        self.refcount = 0
        self._attach_lock = threading.Lock()
        self.pid = os.getpid()
        self.inherited = False  # a fork() child's copy of the parent's replica
        self.metrics.attach(self.state, views=self.views, verifier=self.verifier,
                            disk=self.disk, hedger=self.reader.hedger, tops=self.tops)

    def key_ahead(self) -> KeyAhead:
        """The key-driven prefetch worker (``engine/keyahead.py``), made on first use."""
        worker = self._keyahead
        if worker is None:
            # local: only a statement that joins needs it (1.5 ms of imports kept off opens)
            from .engine.keyahead import KeyAhead

            with self._keyahead_lock:
                worker = self._keyahead
                if worker is None:
                    worker = self._keyahead = KeyAhead(self.reader)
                    self.metrics.attach(keyahead=worker)
        return worker

    # -- what the VFS layer reads ------------------------------------------------------
    @property
    def config(self) -> Config:
        return self.state.config

    @property
    def impl(self) -> ModuleType:
        return self.state.impl

    @property
    def current(self) -> View:
        return self.state.current

    @property
    def last_poll_ok(self) -> float | None:
        return self.state.last_poll_ok

    @property
    def cache(self) -> object:
        return self.state.cache

    def file_id(self, info: FileInfo) -> int:
        return self.state.file_id(info)

    @property
    def hydrator(self) -> Hydrator | None:
        return self._hydrator

    @hydrator.setter
    def hydrator(self, hydrator: Hydrator | None) -> None:
        """The local copy; the reader serves from it and the writer feeds it."""
        with self._attach_lock:  # a member may be joining on another thread
            self._hydrator = hydrator
            self.reader.hydrator = hydrator
            if self.writer is not None:
                self.writer.hydrator = hydrator

    def replan(self) -> View:
        return self.views.replan()

    def view_at_txid(self, txid: int) -> View:
        return self.views.view_at_txid(txid)

    # -- lifecycle ---------------------------------------------------------------------
    def open(self, listing: Pending | None = None) -> None:
        """Build and publish the first view (see ``ViewBuilder.open_first``), replaying
        the boot set meanwhile."""
        config = self.config
        self.boot = start_boot(self.state, self.disk, self.verifier, config.boot_set,
                               self.views.early_object(SHARED_BOOT_SET))
        self.reader.boot = self.boot
        self.metrics.attach(boot=self.boot)
        view = self.views.open_first(listing, wait=config.wait_for_replica,
                                     poll=config.poll_interval, create_empty=config.write)
        if view.txid:
            self.metrics.opened()
            if self.boot is not None:  # first: the schema fetch below finds its pages
                self.boot.finish(view)  # waits for the boot loader
            if config.read_ahead:  # the schema's own extra reads, before the first query
                self.tops.want_schema(view)
            if self.disk is not None:
                self.disk.drop_preloaded()

    def attach_writer(self) -> Writer:
        """Write mode (once): open/recover the buffer, start syncing and compacting; a
        read-only member of the machine's state (``attach_reader``) is promoted."""
        self.wait_joined()
        with self._attach_lock:
            if self.writer is None or self.writer.read_only:
                from .write.attach import attach_writer  # opt-in: not on a read-only open

                self.writer = attach_writer(self.state, self.views, self.hydrator,
                                            member=self.writer)
            return self.writer

    def join_machine(self) -> None:
        """A read-only open joins the machine's shared state of the replica: the unsynced
        commits of its writers, and one poller for all (``write/readpoll.py``). When the
        machine has a log (a writer is or was here), at once: its commits may be newer
        than the bucket. Otherwise later, keeping its ~7 ms of imports (and a thread's
        competition for the GIL) off the cold path: at the first poll tick, or at the
        first read transaction that finds a log a writer has created meanwhile
        (``vfs/file.py``); until then connections read as before."""
        from .write.home import buffer_path_for  # light; the member's code is not

        path = buffer_path_for(self.config.replica_url, self.config.buffer_path)
        if os.path.exists(path):
            self.attach_reader()
        else:
            self.joining = Joining(path, self.attach_reader)

    def attach_reader(self) -> None:
        """Join as a read-only member now (see ``join_machine``)."""
        with self._attach_lock:
            if self.writer is None and not self.inherited:
                from .write.member import attach_reader  # the write layer: only here

                self.writer = attach_reader(self.state, self.views)
                if self.writer is not None:
                    self.writer.hydrator = self._hydrator

    def wait_joined(self) -> None:
        """Join now if the read-only member is still to come (``join_machine``)."""
        if self.joining is not None:
            self.joining.run()

    def start_background(self) -> None:
        """Polling, then hydration when configured."""
        state, config = self.state, self.config
        self.freshness = Freshness(state, self.views)
        self.poller = Poller(_MachinePolls(self.freshness, self), config.poll_interval,
                             state.storage.url)
        self.metrics.attach(freshness=self.freshness)
        self.poller.start()
        if config.hydration:
            from .engine.hydrate.hydrator import start_hydrator  # opt-in, as write mode

            self.hydrator = start_hydrator(state, self.views, self.verifier)

    def forget_after_fork(self) -> None:
        """In a fork() child: this replica (its threads, sockets, locks) is the parent's.
        Mark it so its connections refuse use, and drop what would act on exit."""
        self.inherited = True
        if self.writer is not None:
            self.writer.forget_after_fork()
        for hook in (getattr(self.boot, "save", None),
                     getattr(getattr(self.disk, "store", None), "flush", None),
                     getattr(getattr(self._hydrator, "copy", None), "remove_temp", None)):
            if hook is not None:
                atexit.unregister(hook)

    def close(self) -> None:
        if self.inherited:
            return
        if self.joining is not None:
            self.joining.cancel()  # never joined: nothing to leave
        try:  # the final upload needs storage; a failure still closes the rest, then raises
            if self.writer is not None:
                if self.writer.read_only and self.poller is not None:
                    self.poller.stop()  # its tick reads the member's shared files
                self.writer.close()
        finally:
            self._close_rest()

    def _close_rest(self) -> None:
        self.verifier.close()
        self.tops.close()
        if self._keyahead is not None:
            self._keyahead.close()
        if self.poller is not None:
            self.poller.stop()
        if self.hydrator is not None:  # before the storage client goes
            self.hydrator.close()
        if self.boot is not None:  # keep what this run's first queries needed
            self.boot.save()
        if self.disk is not None:
            self.disk.flush(2.0)
        self.state.close()
        self.reader.hedger.close()
        self.storage.close()


class Joining:
    """A read-only member still to join (``Replica.join_machine``): ``run`` joins in the
    calling thread (the first caller; the others wait for it), ``cancel`` gives up
    (close). ``log_path``: the log whose appearance makes a read transaction join."""

    def __init__(self, log_path: str, join: Callable[[], None]) -> None:
        self.log_path = log_path
        self.next_check = 0.0  # vfs/file.py: when a read transaction looks for the log next
        self.done = threading.Event()
        self._join = join
        self._lock = threading.Lock()

    def run(self) -> None:
        if self.done.is_set():
            return
        with self._lock:
            if not self.done.is_set():
                try:
                    self._join()
                finally:
                    self.done.set()

    def cancel(self) -> None:
        with self._lock:
            self.done.set()


class _MachinePolls:
    """The poller's tick for a replica that joined the machine's shared state: one
    process of the machine (the one elected to sync) polls the bucket; the others learn
    new TXIDs from the shared log (their views are extended from its DONE records).
    When nobody has the duty, read-only members elect one of them to poll and follow
    its poll board (``write/readpoll.py``); after a conflict a writer polls for itself."""

    def __init__(self, freshness: Freshness, replica: Replica) -> None:
        self.freshness = freshness
        self.replica = replica
        self.readers: ReaderPolls | None = None

    @property
    def interval(self) -> float:
        writer = self.replica.writer
        if writer is not None and writer.read_only and self.readers is not None:
            return self.readers.interval(writer)
        return self.freshness.interval

    def poll(self) -> bool:
        joining = self.replica.joining
        if joining is not None and not joining.done.is_set():
            # A read-only member joins here, off the open's path; this tick's poll goes
            # first, so the join (imports, shared files) does not delay it.
            changed = self.freshness.poll()
            joining.run()
            return changed
        writer = self.replica.writer
        if writer is not None and writer.follows_log():
            self.replica.state.last_poll_ok = time.monotonic()
            return False
        if writer is not None and writer.read_only:
            if self.readers is None:
                from .write.readpoll import ReaderPolls  # only with a read-only member

                readers = self.readers = ReaderPolls(self.freshness, self.replica.state,
                                                     self.replica.views)
                writer.before_read = lambda: readers.before_read(writer)
            return self.readers.poll(writer)
        return self.freshness.poll()

    def stats(self) -> dict:
        return self.freshness.stats()


# -- process registry ----------------------------------------------------------------
_registry: dict[tuple[str, str], Replica] = {}
_registry_lock = threading.Lock()
_open_locks: dict[tuple[str, str], threading.Lock] = {}


def is_open(replica_url: str) -> bool:
    """Is a replica with this URL open in this process (any core)?"""
    with _registry_lock:
        return any(key[0] == replica_url for key in _registry)


def open_replica(config: Config, impl: ModuleType = _impl,
                 storage: StorageClient | None = None,
                 listing: Pending | None = None,
                 ahead: OpenAhead | None = None) -> Replica:
    """The shared replica for ``config.replica_url`` (opened on first use); pair every
    call with :func:`release_replica`. Options of the first opener win. ``listing``: a
    LIST of ``storage`` this open already started (``litevfs.connect`` sends it before
    importing the rest); both are closed unused when the replica is already open.
    ``ahead``: the index reads that LIST's thread sends when it answers."""
    key = (config.replica_url, impl.__name__)

    def shared(replica: Replica) -> Replica:
        replica.refcount += 1
        if listing is not None and storage is not None:
            storage.close()
        return replica

    with _registry_lock:
        replica = _registry.get(key)
        if replica is not None:
            return shared(replica)
        open_lock = _open_locks.setdefault(key, threading.Lock())
    with open_lock:  # one open per URL at a time; others wait and share it
        with _registry_lock:
            replica = _registry.get(key)
            if replica is not None:
                return shared(replica)
        if storage is None:
            storage = open_storage_for(config)
            storage.preconnect(2)  # handshakes overlap the LIST
        # The open's LIST goes out now and overlaps the replica's set-up (disk cache,
        # verifier, ...): it is still issued after this open began, so it is as fresh.
        if listing is None:
            listing = start_listing(storage)
        replica = Replica(config, storage, impl, ahead)
        try:
            replica.open(listing)
            if config.write:
                replica.attach_writer()
            else:
                replica.join_machine()
        except BaseException:
            replica.close()
            raise
        replica.start_background()
        with _registry_lock:
            replica.refcount = 1
            _registry[key] = replica
        return replica


def release_replica(replica: Replica) -> None:
    with _registry_lock:
        replica.refcount -= 1
        if replica.refcount > 0:
            return
        for key, value in list(_registry.items()):
            if value is replica:
                del _registry[key]
    replica.close()


def open_replicas() -> list[Replica]:
    """Replicas currently open in this process (for tests and diagnostics)."""
    with _registry_lock:
        return list(_registry.values())


def _after_fork_in_child() -> None:
    """fork() copies the registry but not the threads, sockets' ownership or POSIX
    locks: the child starts with no open replica (new connections open their own, and
    join the machine's shared write state as a new process); inherited connections
    refuse use with a clear error (``vfs/file.py``)."""
    global _registry_lock
    _registry_lock = threading.Lock()  # may have been held by a thread that is gone
    replicas = list(_registry.values())
    _registry.clear()
    _open_locks.clear()
    for replica in replicas:
        replica.forget_after_fork()
    shared = sys.modules.get("litevfs.write.shared")  # loaded only by write mode
    if shared is not None:
        shared.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
