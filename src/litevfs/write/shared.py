"""Machine-local coordination of one write buffer between the processes that share it.

A write buffer ``P`` (``buffer.py``, the shared log) comes with three small files:

* ``P.lock``: every process holds a shared ``flock`` on it while it uses the buffer.
  Older litevfs versions and ``litevfs unsynced discard`` take it exclusively, so
  neither runs next to processes using the buffer.
* ``P.shm``: 4 KiB mapped into every process (like SQLite's ``-shm``): the committed
  end of the log (generation tag + offset in one 64-bit word, so a reader never sees
  one without the other), the end an append in progress claims (a crash between the
  write and the commit leaves it behind: the next appender truncates), a flag set while
  the log is being rewritten, and a hint that processes are waiting for the write lock.
  It is a cache: the first process to open the buffer rebuilds it from the log. Two
  more words serve read-only members: the sequence number of the poll board (``P.board``,
  what the elected reader learned from the bucket) and when that reader last polled.
* ``P.shm`` also carries the POSIX byte-range locks (``fcntl``), released by the kernel
  when a process dies, which is what makes a crash safe: WRITER (one process appends
  at a time: SQLite's RESERVED..EXCLUSIVE across processes), WAITING (held shared by
  processes waiting for WRITER), SYNC (one upload at a time), DUTY (the process that
  syncs every interval and compacts), INIT (opening/closing the buffer), MEMBER
  (held shared by every process: "am I alone?") and POLL (the read-only process
  elected to poll the bucket while no process holds DUTY; ``write/readpoll.py``).
* ``P.bell``: a FIFO; releasing WRITER rings it when someone waits, so a waiter wakes in
  microseconds instead of sleeping SQLite's busy-handler milliseconds. ``P.want``: a
  FIFO a waiter writes to, waking the process that kept WRITER after its last commit
  (``LockKeeper``), so it hands the lock over at once.

POSIX locks belong to the process, and closing *any* descriptor of ``P.shm`` drops all
of them: each process opens the files once per buffer (``SharedFiles.open`` refuses a
second open in the same process), threads share the locks with reference counts.
Locks are not inherited by ``fork()``: ``forget_after_fork`` drops the child's copies.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import select
import stat
import struct
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager

from .._worker import Worker
from ..engine.objstore import remove_store, store_dir
from ..errors import BufferInUseError, WriteBufferError

LOCK_BASE = 8192  # byte-range locks live past the mapped page
WRITER, WAITING, SYNC, DUTY, INIT, MEMBER, POLL = range(7)
_BYTES = 7
_SHARED_BYTES = frozenset((WAITING, MEMBER))

SHM_SIZE = 4096
SHM_MAGIC = 0x3130_4D48_5357_564C  # "LVWSHM01" little endian
_U64 = struct.Struct("<Q")
_HEAD3 = struct.Struct("<QQQ")  # state, claimed end, rewriting: one read on the hot path
_PAIR = struct.Struct("<QQ")
_OFF_MAGIC, _OFF_STATE, _OFF_WRITING, _OFF_REWRITING, _OFF_WAITERS = 0, 8, 16, 24, 32
OFF_BOARD, _OFF_POLLED = 40, 48  # poll board sequence number; last poll (wall ms)
END_BITS = 48
END_MASK = (1 << END_BITS) - 1
GEN_MASK = 0xFFFF

INIT_TIMEOUT = 30.0
STREAK_MAX = 64  # commits a process may make in a row while others wait for the lock
POLL_S = 0.002  # a waiter looks at the lock this often between rings
STREAK_IDLE_S = 0.0005  # a streak's holder that commits nothing for this long hands over
KEEP_TICK_S = 0.1  # a kept write lock is handed over at once when asked; this is the net

_registry: dict[str, SharedFiles] = {}
_registry_lock = threading.Lock()


def pack_state(gen: int, end: int) -> int:
    return ((gen & GEN_MASK) << END_BITS) | (end & END_MASK)


def unpack_state(value: int) -> tuple[int, int]:
    return value >> END_BITS, value & END_MASK


def _busy(exc: OSError) -> bool:
    return exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


class SharedFiles:
    """This process's handle on the coordination files of one write buffer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self._mutex = threading.Lock()
        self._counts = [0] * _BYTES
        self._shm_fd = -1
        self._lock_fd = -1
        self._bell_fd = -1
        self._want_fd = -1
        self.mm: mmap.mmap | None = None
        self.alone = False  # no other process had the buffer open when we joined
        self.inherited = False
        self._kept = False  # WRITER still held after its last user released it

    # -- open / close --------------------------------------------------------------------
    @classmethod
    def open(cls, path: str) -> SharedFiles:
        """Join the buffer at ``path``: returns with INIT held (call ``release_init``)."""
        key = os.path.abspath(path)
        with _registry_lock:
            if key in _registry:
                raise BufferInUseError(
                    f"write buffer {path} is in use in this process already (one write "
                    "state per replica and process: use one core implementation)")
            files = cls(key)
            _registry[key] = files
        try:
            files._open()
        except BaseException:
            files.close()
            raise
        return files

    def _open(self) -> None:
        path = self.path
        deadline = time.monotonic() + INIT_TIMEOUT
        while True:  # the last process to close deletes these files: retry on a stale one
            fd = os.open(path + ".shm", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            self._shm_fd = fd
            if not self._wait_lock(INIT, deadline):
                raise BufferInUseError(f"write buffer {path}: another process kept it locked "
                                       f"for {INIT_TIMEOUT:g}s while opening or closing it")
            try:
                same = os.fstat(fd).st_ino == os.stat(path + ".shm").st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            self._counts[INIT] = 0
            os.close(fd)  # drops the lock too
            self._shm_fd = -1
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or not stat.S_ISREG(st.st_mode):
            raise WriteBufferError(f"{path}.shm is not a regular file of this user")
        if st.st_size < SHM_SIZE:
            os.ftruncate(fd, SHM_SIZE)
        self.mm = mmap.mmap(fd, SHM_SIZE)
        # Older versions (and `litevfs unsynced discard`) hold P.lock exclusively.
        self._lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if _busy(exc):
                raise BufferInUseError(
                    f"write buffer {path} is in use by an older litevfs or by `litevfs "
                    "unsynced discard` (stop it first)") from None
            raise
        self.alone = self.probe_free(MEMBER)
        self.lock(MEMBER)
        if self.alone:  # nobody else: the map is rebuilt from the log (buffer.py)
            self.mm[:] = bytes(SHM_SIZE)
            self._put(_OFF_MAGIC, SHM_MAGIC)
        elif self._u64(_OFF_MAGIC) != SHM_MAGIC:
            raise WriteBufferError(f"{path}.shm is damaged while other processes use the "
                                   "buffer; stop them and open it again")
        self._bell_fd = self._fifo(path + ".bell")
        self._want_fd = self._fifo(path + ".want")

    @staticmethod
    def _fifo(name: str) -> int:
        try:
            os.mkfifo(name, 0o600)
        except FileExistsError:
            pass
        fd = os.open(name, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)
            raise WriteBufferError(f"{name} is not a FIFO")
        return fd

    def release_init(self) -> None:
        self.unlock(INIT)

    def last_one(self) -> bool:
        """Is this the only process using the buffer? (Call with INIT held.)"""
        return self.probe_free(MEMBER)

    def close(self, *, remove: bool = False) -> None:
        """Leave the buffer; ``remove``: delete the coordination files too (the caller
        holds INIT and is the last one)."""
        with _registry_lock:
            if _registry.get(self.path) is self:
                del _registry[self.path]
        if remove:
            remove_store(store_dir(self.path))  # the machine's shared LTX objects
            for suffix in (".board", ".bell", ".want", ".lock", ".shm"):
                try:
                    os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass
        if self.mm is not None:
            try:
                self.mm.close()
            except (BufferError, ValueError):
                pass
            self.mm = None
        for name in ("_bell_fd", "_want_fd", "_lock_fd", "_shm_fd"):  # shm last: the locks
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
        self._counts = [0] * _BYTES
        self._kept = False

    def forget_after_fork(self) -> None:
        """In a forked child: the locks were not inherited; drop the descriptors (the
        parent's flock on P.lock must not outlive the parent through our copy)."""
        self.inherited = True
        self.mm = None  # the mapping is the parent's view: never touched again here
        for name in ("_bell_fd", "_want_fd", "_lock_fd", "_shm_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)
        self._counts = [0] * _BYTES

    # -- byte-range locks ----------------------------------------------------------------
    def _fcntl(self, byte: int, op: int) -> bool:
        try:
            fcntl.lockf(self._shm_fd, op, 1, LOCK_BASE + byte)
            return True
        except OSError as exc:
            if _busy(exc):
                return False
            if exc.errno == errno.EDEADLK:
                raise WriteBufferError(f"write buffer {self.path}: lock deadlock "
                                       "between processes") from None
            raise

    def lock(self, byte: int) -> bool:
        """Take ``byte`` without waiting (re-entrant within the process)."""
        with self._mutex:
            if self._counts[byte]:
                self._counts[byte] += 1
                return True
            if byte == WRITER and self._kept:  # still held from the last release
                self._kept = False
                self._counts[byte] = 1
                return True
            mode = fcntl.LOCK_SH if byte in _SHARED_BYTES else fcntl.LOCK_EX
            if not self._fcntl(byte, mode | fcntl.LOCK_NB):
                return False
            self._counts[byte] = 1
            return True

    def unlock(self, byte: int, *, keep: bool = False) -> None:
        """Release ``byte``; ``keep`` (WRITER): the last release keeps the lock with the
        kernel (no system call now or at the next ``lock``) until ``drop_kept``."""
        with self._mutex:
            if self._counts[byte] <= 0:
                return
            self._counts[byte] -= 1
            if self._counts[byte] == 0 and self._shm_fd >= 0:
                if keep and byte == WRITER:
                    self._kept = True
                else:
                    self._fcntl(byte, fcntl.LOCK_UN)

    @property
    def kept(self) -> bool:
        return self._kept

    def drop_kept(self) -> bool:
        """Really release a kept WRITER (someone waits, or we close). True if it was."""
        with self._mutex:
            if not self._kept:
                return False
            self._kept = False
            if self._counts[WRITER] == 0 and self._shm_fd >= 0:
                self._fcntl(WRITER, fcntl.LOCK_UN)
            return True

    def held(self, byte: int) -> bool:
        return self._counts[byte] > 0

    def _wait_lock(self, byte: int, deadline: float) -> bool:
        delay = 0.0005
        while not self.lock(byte):
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        return True

    def wait_lock(self, byte: int, timeout: float | None) -> bool:
        """Take ``byte``, polling until ``timeout`` seconds passed (None: forever)."""
        deadline = float("inf") if timeout is None else time.monotonic() + timeout
        return self._wait_lock(byte, deadline)

    def probe_free(self, byte: int) -> bool:
        """Does no *other* process hold ``byte``? (Ours are ignored: POSIX locks of one
        process never conflict; a failed request leaves our own lock as it was.)"""
        with self._mutex:
            if not self._fcntl(byte, fcntl.LOCK_EX | fcntl.LOCK_NB):
                return False
            if self._counts[byte]:  # we held it shared: back to shared
                self._fcntl(byte, fcntl.LOCK_SH)
            else:
                self._fcntl(byte, fcntl.LOCK_UN)
            return True

    @contextmanager
    def holding(self, byte: int, timeout: float | None, what: str) -> Iterator[None]:
        if not self.wait_lock(byte, timeout):
            raise BufferInUseError(f"write buffer {self.path}: {what} took longer than "
                                   f"{timeout:g}s")
        try:
            yield
        finally:
            self.unlock(byte)

    # -- the mapped state ----------------------------------------------------------------
    def _u64(self, off: int) -> int:
        mm = self.mm
        if mm is None:
            raise WriteBufferError(f"write buffer {self.path} is closed")
        return _U64.unpack_from(mm, off)[0]

    def _put(self, off: int, value: int) -> None:
        mm = self.mm
        if mm is None:
            raise WriteBufferError(f"write buffer {self.path} is closed")
        _U64.pack_into(mm, off, value)

    def state(self) -> tuple[int, int]:
        """(generation tag, committed end offset) of the log, read as one word."""
        return unpack_state(self._u64(_OFF_STATE))

    def state_word(self) -> int:
        return self._u64(_OFF_STATE)

    def head3(self) -> tuple[int, int, int]:
        """(state word, claimed end, rewriting flag) in one read (WRITER held)."""
        mm = self.mm
        if mm is None:
            raise WriteBufferError(f"write buffer {self.path} is closed")
        return _HEAD3.unpack_from(mm, _OFF_STATE)

    def publish(self, gen: int, end: int) -> int:
        """Make the log up to ``end`` (of generation ``gen``) visible (WRITER held);
        returns the new state word."""
        word = pack_state(gen, end)
        mm = self.mm
        if mm is None:
            raise WriteBufferError(f"write buffer {self.path} is closed")
        _PAIR.pack_into(mm, _OFF_STATE, word, end)
        return word

    def claim(self, end: int) -> None:
        """An append up to ``end`` starts (WRITER held)."""
        self._put(_OFF_WRITING, end)

    def claimed(self) -> int:
        return self._u64(_OFF_WRITING)

    def set_rewriting(self, on: bool) -> None:
        self._put(_OFF_REWRITING, 1 if on else 0)

    def rewriting(self) -> bool:
        return self._u64(_OFF_REWRITING) != 0

    # -- the poll board (read-only members; POLL held to write) ----------------------------
    def board_seq(self) -> int:
        return self._u64(OFF_BOARD)

    def set_board_seq(self, seq: int) -> None:
        self._put(OFF_BOARD, seq)

    def polled_ms(self) -> int:
        """Wall-clock milliseconds of the elected reader's last successful poll."""
        return self._u64(_OFF_POLLED)

    def set_polled_ms(self, ms: int) -> None:
        self._put(_OFF_POLLED, ms)

    # -- the bell: waiting for WRITER ------------------------------------------------------
    def waiters_hinted(self) -> bool:
        return self._u64(_OFF_WAITERS) != 0

    def ring_if_waited(self) -> bool:
        """After releasing WRITER: wake waiting processes, if any. True when some wait."""
        if not self._u64(_OFF_WAITERS):
            return False
        if self.probe_free(WAITING):
            self._put(_OFF_WAITERS, 0)  # nobody waits any more (a hint: waiters re-set it)
            return False
        try:
            os.write(self._bell_fd, b"\0")
        except OSError:
            pass  # full (stale rings) or closed: waiters also poll
        return True

    def wait_bell(self, timeout: float) -> None:
        try:
            ready, _, _ = select.select([self._bell_fd], [], [], timeout)
            if ready:
                os.read(self._bell_fd, 64)
        except (OSError, ValueError):
            time.sleep(min(timeout, 0.001))

    def start_waiting(self) -> None:
        self.lock(WAITING)
        self._put(_OFF_WAITERS, 1)

    def poke_want(self) -> None:
        try:
            os.write(self._want_fd, b"\0")
        except OSError:
            pass

    def wait_want(self, timeout: float) -> None:
        """Block until a process starts waiting for WRITER (or ``timeout``)."""
        try:
            ready, _, _ = select.select([self._want_fd], [], [], timeout)
            if ready:
                os.read(self._want_fd, 64)
        except (OSError, ValueError):
            time.sleep(timeout)

    def stop_waiting(self) -> None:
        self.unlock(WAITING)


class WriterGate:
    """The cross-process write lock of one buffer (WRITER), shared by this process's
    connections and its syncer; fair enough that no process starves: a process that
    keeps committing while others wait yields after ``STREAK_MAX`` commits."""

    def __init__(self, files: SharedFiles) -> None:
        self.files = files
        self.streak = 0
        self.released_at = 0.0  # the last release of a streak (monotonic)

    def try_acquire(self, *, polite: bool = True) -> bool:
        """Take WRITER now if free. ``polite``: refuse after a long streak while other
        processes wait (the caller then waits its turn with ``wait``)."""
        if polite and self.streak >= STREAK_MAX and not self.files.held(WRITER):
            return False
        return self.files.lock(WRITER)

    def wait(self, timeout: float, *, yield_first: bool = False,
             meanwhile: Callable[[], None] | None = None) -> bool:
        """Wait up to ``timeout`` s for WRITER and take it. ``yield_first``: let a waiting
        process go first (this one just had a long streak). ``meanwhile``: called after
        each look that found the lock taken (catching up with the commits of the process
        that has it, so that taking it costs only its last ones)."""
        files = self.files
        deadline = time.monotonic() + timeout
        files.start_waiting()
        try:
            if yield_first:
                files.wait_bell(min(timeout, POLL_S))
            poked = False
            while True:
                if files.lock(WRITER):
                    self.streak = 0
                    return True
                if meanwhile is not None:
                    meanwhile()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                files.wait_bell(min(remaining, POLL_S))
                if not poked:  # a writer that is active sees the hint when it releases;
                    poked = True  # one that went idle keeping the lock needs waking
                    files.poke_want()
        finally:
            files.stop_waiting()

    def free_elsewhere(self) -> bool:
        """Does no other process hold WRITER?"""
        return self.files.probe_free(WRITER)

    def release(self) -> None:
        """Release WRITER. Nobody waiting: the lock stays with this process (two system
        calls less per commit; ``LockKeeper`` hands it over once someone waits). Others
        waiting: this process keeps it for a streak of up to ``STREAK_MAX`` commits while
        it goes on committing (each handoff costs the machine context switches and the
        next writer's catch-up; a batch amortises them, and a lock released between the
        commits of a streak was taken by whichever waiter happened to look, so streaks
        were short), then it releases the lock and rings the bell. ``LockKeeper`` hands a
        kept lock over as soon as the process pauses for ``STREAK_IDLE_S``."""
        files = self.files
        mm = files.mm
        hinted = mm is not None and _U64.unpack_from(mm, _OFF_WAITERS)[0] != 0
        with files._mutex:  # files.unlock(WRITER, keep=...), inlined: every commit
            count = files._counts[WRITER] - 1
            if count < 0:
                return
            files._counts[WRITER] = count
            if count:
                return
            if not hinted:
                files._kept = True
                self.streak = 0
                return
            self.streak += 1
            if self.streak < STREAK_MAX:
                files._kept = True
                self.released_at = time.monotonic()
                return
            if files._shm_fd >= 0:
                files._fcntl(WRITER, fcntl.LOCK_UN)
        if not files.ring_if_waited():
            self.streak = 0  # the hint was stale: nobody waits

    def hand_over(self) -> bool | None:
        """Release a kept lock when someone waits for it (``LockKeeper``): at once after
        an idle keep, after ``STREAK_IDLE_S`` without a commit during a streak. None:
        look again in ``STREAK_IDLE_S`` (a streak goes on, or a write transaction of
        this process holds the lock while others wait)."""
        files = self.files
        if not files.waiters_hinted():
            return False
        if not files.kept:
            return None if files.held(WRITER) else False
        if 0 < self.streak < STREAK_MAX and \
                time.monotonic() - self.released_at < STREAK_IDLE_S:
            return None
        if files.drop_kept():
            files.ring_if_waited()
            return True
        return False

    def close(self) -> None:
        self.files.drop_kept()


class LockKeeper(Worker):
    """Hands a kept WRITER lock over once another process waits for it: it sleeps on
    ``P.want``, which every waiter writes to (a thread woken only then, and every
    ``KEEP_TICK_S`` as a safety net, so it never competes for the GIL with commits)."""

    stop_timeout = 2 * KEEP_TICK_S + 1.0

    def __init__(self, gate: WriterGate, name: str = "") -> None:
        super().__init__(f"litevfs-lock {name}")
        self.gate = gate
        self._again = False

    def step(self) -> float:
        files = self.gate.files
        if files.mm is None:
            return KEEP_TICK_S
        if self._again:  # a streak or a write transaction holds the lock: look soon
            time.sleep(STREAK_IDLE_S)
        else:
            files.wait_want(KEEP_TICK_S)
        if not self.stopped:
            self._again = self.gate.hand_over() is None
        return 0.0

    def stop(self) -> None:
        self._stop.set()
        self.gate.files.poke_want()  # out of its select at once
        super().stop()
        self.gate.close()


def forget_after_fork() -> None:
    """Called in a forked child (one thread): every inherited handle becomes unusable.
    The registry lock may have been held by a thread that does not exist here."""
    global _registry_lock
    _registry_lock = threading.Lock()
    handles = list(_registry.values())
    _registry.clear()
    for files in handles:
        files._mutex = threading.Lock()
        files.forget_after_fork()
