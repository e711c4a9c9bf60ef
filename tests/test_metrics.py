"""Cost and health metrics: PRAGMA litevfs_stats, litevfs.stats(conn), litevfs info."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import litevfs
from litevfs.cli.main import main as cli_main
from litevfs.engine.metrics import request_cost_usd
from tests.vfs_support import FakeLitestream, make_accounts_db, unique_memory_url


def _replica(tmp_path: Path) -> tuple[str, FakeLitestream]:
    url = unique_memory_url("metrics")
    make_accounts_db(tmp_path / "p.db").close()
    ls = FakeLitestream(tmp_path / "p.db", url)
    ls.sync()
    return url, ls


def test_request_cost() -> None:
    assert request_cost_usd(1000, 0, 0) == pytest.approx(0.005)
    assert request_cost_usd(0, 1000, 0) == pytest.approx(0.0004)
    assert request_cost_usd(0, 0, 2000) == pytest.approx(0.01)


def test_pragma_and_python_call(tmp_path: Path, core) -> None:
    url, _ = _replica(tmp_path)
    con = litevfs.connect(url, impl=core, poll_interval=0)
    try:
        assert con.execute("SELECT count(*) FROM accounts").fetchone()[0] == 200
        raw = con.execute("PRAGMA litevfs_stats").fetchone()[0]
        stats = json.loads(raw)
        for key in ("lists", "gets", "puts", "bytes_read", "remote_s", "estimated_cost_usd",
                    "memory_cache", "disk_cache", "txid", "page_size", "pages", "open_s"):
            assert key in stats, key
        assert stats["lists"] >= 1 and stats["gets"] >= 1
        assert stats["remote_s"] >= 0 and stats["open_s"] is not None
        assert stats["memory_cache"]["hits"] + stats["memory_cache"]["misses"] > 0
        assert stats["estimated_cost_usd"] == pytest.approx(request_cost_usd(
            stats["lists"], stats["gets"], stats["puts"]), abs=1e-7)
        again = litevfs.stats(con)
        assert again["txid"] == stats["txid"] and again["gets"] >= stats["gets"]
        with pytest.raises(Exception, match="read-only"):
            con.execute("PRAGMA litevfs_stats = 1")
    finally:
        con.close()


def test_info_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replica = tmp_path / "replica"
    from litevfs.ltx.encoder import encode_file
    from litevfs.storage.file import FileStorage

    st = FileStorage(str(replica))
    page = bytes(4096)
    st.write_ltx(9, 1, 2, encode_file([(1, page), (2, page)], page_size=4096, commit=2,
                                      min_txid=1, max_txid=2, timestamp_ms=1_000))
    st.write_ltx(0, 3, 3, encode_file([(2, page), (3, page)], page_size=4096, commit=3,
                                      min_txid=3, max_txid=3, timestamp_ms=2_000))
    assert cli_main(["info", str(replica), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["txid"] == f"{3:016x}" and info["pages"] == 3 and info["page_size"] == 4096
    assert info["db_size"] == 3 * 4096 and info["files"] == 2
    assert info["levels"]["0"]["files"] == 1 and info["levels"]["9"]["files"] == 1
    assert info["requests"]["lists"] == 1 and info["lag_s"] >= 0
    assert cli_main(["info", str(replica)]) == 0
    text = capsys.readouterr().out
    assert "TXID" in text and "level 9" in text and "12.0 KiB" in text
