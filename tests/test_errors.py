"""Every public error class is importable from ``litevfs`` and none shadows a builtin."""

from __future__ import annotations

import builtins
import importlib
import pkgutil
import warnings

import pytest

import litevfs
from litevfs.errors import LiteVFSError

# Exceptions used for control flow inside one module and never raised to a caller.
INTERNAL = {
    "litevfs.storage.retry.Retryable": "turned into TransientStorageError by call_with_retry",
    "litevfs.engine.hydrate.sidecar.SidecarError": "caught by the hydrator (starts over)",
    "litevfs.engine.hydrate.localcopy.HydrationInUseError":
        "caught by the hydrator (it follows the process that hydrates the file)",
}

# The PEP 249 module: its exception names are fixed by the PEP (``Warning`` included, a
# builtin's name) and live in ``litevfs.dbapi2``, as the stdlib's live in ``sqlite3``.
DBAPI = "litevfs.dbapi2"


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for mod_info in pkgutil.walk_packages(litevfs.__path__, "litevfs."):
        if mod_info.name.rsplit(".", 1)[-1].startswith("__"):
            continue  # __main__ runs the CLI
        if mod_info.name == DBAPI:
            continue
        module = importlib.import_module(mod_info.name)
        for name, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__ == module.__name__ and not name.startswith("_")):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_public_error_is_exported_under_its_own_name() -> None:
    classes = _exception_classes()
    assert "litevfs.errors.BufferInUseError" in classes
    missing = []
    for qualname, cls in classes.items():
        if qualname in INTERNAL:
            continue
        assert issubclass(cls, LiteVFSError), f"{qualname} is not a LiteVFSError"
        if getattr(litevfs, cls.__name__, None) is not cls or cls.__name__ not in litevfs.__all__:
            missing.append(qualname)
    assert not missing, f"not exported from litevfs: {missing}"


def test_no_error_name_shadows_a_builtin() -> None:
    names = {cls.__name__ for cls in _exception_classes().values()}
    names |= {n for n in litevfs.__all__ if n.endswith(("Error", "Timeout"))}
    assert not names & set(dir(builtins)), names & set(dir(builtins))


def test_old_buffer_error_name_is_a_deprecated_alias() -> None:
    from litevfs.write import buffer

    assert "BufferError" not in vars(buffer)  # never shadows the builtin inside the module
    with pytest.warns(DeprecationWarning):
        alias = buffer.BufferError
    assert alias is litevfs.WriteBufferError
    assert issubclass(litevfs.BufferInUseError, litevfs.WriteBufferError)


def test_second_writer_gets_buffer_in_use_error(tmp_path) -> None:
    from litevfs.write.buffer import WriteBuffer

    path = str(tmp_path / "w.wbuf")
    first, _ = WriteBuffer.open(path, url="memory://x", page_size=4096, base_txid=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(litevfs.BufferInUseError, match="in use"):
                WriteBuffer.open(path, url="memory://x", page_size=4096, base_txid=0)
    finally:
        first.close()
