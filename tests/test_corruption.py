"""Bit flips and truncation of LTX objects never become wrong answers (both twins).

The verification policy (src/litevfs/verify.py): files up to ``verify_max_size`` are
fetched whole and CRC-64-verified before any of their pages is served; with
``verify=strict`` every file is; in ``background`` mode larger files are verified once
in the background and fail every later read when bad. Each trial damages one object in
a memory bucket and runs queries on a fresh open: every query returns the primary's
rows or raises an apsw/litevfs error; the counts go to the reliability figures.
"""

from __future__ import annotations

import logging
import random
import sqlite3
from pathlib import Path
from types import ModuleType

import apsw
import pytest

import litevfs
from litevfs.errors import LiteVFSError
from litevfs.session import open_replicas
from litevfs.storage.memory import memory_store
from tests.rig import report
from tests.vfs_support import FakeLitestream, make_accounts_db, transfer, unique_memory_url

QUERIES = [
    "SELECT count(*), sum(balance) FROM accounts",
    "SELECT id, name, balance FROM accounts WHERE id % 37 = 1 ORDER BY id",
    "SELECT id, length(data), hex(substr(data, 100, 8)) FROM blobs ORDER BY id",
    "SELECT name FROM accounts WHERE name > 'name-00150' ORDER BY name LIMIT 20",
]


def _build(tmp_path: Path) -> tuple[str, FakeLitestream, dict[str, list]]:
    url = unique_memory_url("corrupt")
    con = make_accounts_db(tmp_path / "p.db", accounts=300, blob_rows=12, blob_size=6000)
    ls = FakeLitestream(tmp_path / "p.db", url)
    ls.sync()
    for i in range(3):
        transfer(con, i, 100 + i, 7)
        con.execute("UPDATE blobs SET data = randomblob(6000) WHERE id = ?", (i,))
        ls.sync()
    con.close()
    ref = sqlite3.connect(tmp_path / "p.db")
    expected = {q: ref.execute(q).fetchall() for q in QUERIES}
    ref.close()
    return url, ls, expected


def _damage(url: str, rng: random.Random) -> tuple[str, tuple, bytes]:
    """Flip a bit or cut the tail of one object; returns what to restore."""
    store = memory_store(url.removeprefix("memory://"))
    with store.lock:
        level = 0
        key = rng.choice(sorted(store.ltx[level]))
        data, created = store.ltx[level][key]
        bad = bytearray(data)
        if rng.random() < 0.75:
            pos = rng.randrange(len(bad))
            bad[pos] ^= 1 << rng.randrange(8)
            kind = "bitflip"
        else:
            bad = bad[:rng.randrange(1, len(bad))]
            kind = "truncate"
        store.ltx[level][key] = (bytes(bad), created)
    return kind, key, data


def _restore(url: str, key: tuple, data: bytes) -> None:
    store = memory_store(url.removeprefix("memory://"))
    with store.lock:
        store.ltx[0][key] = (data, store.ltx[0][key][1])


def _trial(url: str, core: ModuleType, expected: dict[str, list], **options: object) -> str:
    """'detected' (an error), 'harmless' (right rows, no error); wrong rows fail."""
    try:
        con = litevfs.connect(url, impl=core, poll_interval=0, boot_set="off",
                              fetch_retries=0, **options)
    except (LiteVFSError, apsw.Error):
        return "detected"
    outcome = "harmless"
    try:
        for q, want in expected.items():
            try:
                got = con.execute(q).fetchall()
            except apsw.Error:
                outcome = "detected"
                continue
            assert got == want, f"wrong rows for {q!r}"
    finally:
        con.close()
    return outcome


@pytest.mark.parametrize("options", [{}, {"verify": "strict", "verify_max_size": 0}],
                         ids=["small-whole", "strict-streamed"])
def test_damaged_objects_never_give_wrong_rows(tmp_path: Path, core: ModuleType,
                                               options: dict) -> None:
    url, _ls, expected = _build(tmp_path)
    rng = random.Random(f"{core.__name__}-{options}")
    outcomes: dict[str, int] = {"detected": 0, "harmless": 0}
    trials = 150
    for _ in range(trials):
        kind, key, original = _damage(url, rng)
        outcomes[_trial(url, core, expected, **options)] += 1
        _restore(url, key, original)
    assert _trial(url, core, expected, **options) == "harmless"  # intact again
    report.record("corruptions_tried", trials)
    report.record("corruptions_detected", outcomes["detected"])
    report.record("corruptions_harmless", outcomes["harmless"])
    # A damaged byte of a file the view reads is always caught by the CRC; harmless ones
    # only hit files whose pages the view no longer uses.
    assert outcomes["detected"] >= trials * 0.6, outcomes


def _victim(url: str) -> tuple[tuple, bytes, int]:
    """The first L0 file and the offset of a byte inside the last page frame's payload
    (a blob page: damaging it changes data, not structure)."""
    from litevfs._impl import decode_page_index
    from litevfs.ltx.decoder import locate_index

    store = memory_store(url.removeprefix("memory://"))
    key = min(store.ltx[0])
    data = store.ltx[0][key][0]
    loc = locate_index(data, len(data))
    pgnos, offsets, sizes, _ = decode_page_index(data, loc.start)
    i = max(range(len(pgnos)), key=lambda j: sizes[j])
    return key, data, offsets[i] + sizes[i] // 2


def test_failed_file_fails_every_later_read(tmp_path: Path, core: ModuleType,
                                            caplog: pytest.LogCaptureFixture) -> None:
    url, _ls, expected = _build(tmp_path)
    key, data, pos = _victim(url)
    bad = bytearray(data)
    bad[pos] ^= 0x10
    store = memory_store(url.removeprefix("memory://"))
    store.ltx[0][key] = (bytes(bad), store.ltx[0][key][1])
    caplog.set_level(logging.ERROR, logger="litevfs")
    con = litevfs.connect(url, impl=core, poll_interval=0, boot_set="off")
    try:
        for _ in range(3):
            with pytest.raises(apsw.IOError, match="(?i)verification|checksum"):
                for q in QUERIES:
                    con.execute(q).fetchall()
        messages = [r.getMessage() for r in caplog.records if r.name == "litevfs.verify"]
        assert len(messages) == 1, messages  # logged once, named
        assert "0000000000000001-0000000000000001.ltx" in messages[0]
    finally:
        con.close()
    report.record("corruptions_tried", 1)
    report.record("corruptions_detected", 1)


def test_background_verification_condemns_a_large_file(tmp_path: Path,
                                                       core: ModuleType) -> None:
    """Above verify_max_size pages are served at once (frame checks only) and the file is
    verified in the background; once it fails, its pages are refused even from cache."""
    url, _ls, expected = _build(tmp_path)
    key, data, pos = _victim(url)
    bad = bytearray(data)
    bad[pos] ^= 0x10
    store = memory_store(url.removeprefix("memory://"))
    store.ltx[0][key] = (bytes(bad), store.ltx[0][key][1])
    con = litevfs.connect(url, impl=core, poll_interval=0, boot_set="off",
                          verify_max_size=0, verify_bandwidth=0)
    try:
        try:
            con.execute(QUERIES[0]).fetchall()  # served before verification finishes
        except apsw.IOError:
            pass
        (replica,) = [r for r in open_replicas() if r.config.replica_url == url]
        assert replica.verifier.wait_idle(10)
        assert replica.verifier.failed
        with pytest.raises(apsw.IOError, match="failed verification"):
            for q in QUERIES:
                con.execute(q).fetchall()
    finally:
        con.close()
    report.record("corruptions_tried", 1)
    report.record("corruptions_detected", 1)


def test_verification_is_counted_and_cheap(tmp_path: Path, core: ModuleType) -> None:
    """Small files are read whole once: later misses of the same file are ranged reads
    and the intact replica answers every query."""
    url, _ls, expected = _build(tmp_path)
    con = litevfs.connect(url, impl=core, poll_interval=0, boot_set="off",
                          cache_size=8192)
    try:
        for q, want in expected.items():
            assert con.execute(q).fetchall() == want
        (replica,) = [r for r in open_replicas() if r.config.replica_url == url]
        assert replica.verifier.files_verified >= 1 and not replica.verifier.failed
        for q, want in expected.items():  # tiny cache: misses again, no re-verification
            assert con.execute(q).fetchall() == want
    finally:
        con.close()


def test_background_budget_follows_the_core_unless_set() -> None:
    import litevfs._impl as selected
    import litevfs._pagecache as compiled
    import litevfs._pagecache_py as pure
    from litevfs.engine.verify import COMPILED_BANDWIDTH, PURE_BANDWIDTH, default_bandwidth

    assert default_bandwidth(pure) == PURE_BANDWIDTH
    assert default_bandwidth(compiled) == COMPILED_BANDWIDTH
    assert default_bandwidth(selected) == (
        PURE_BANDWIDTH if selected.IMPLEMENTATION == "python" else COMPILED_BANDWIDTH)
