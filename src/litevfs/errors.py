"""Exception hierarchy shared by every layer (and by both core twins).

Stdlib only: nothing here knows about SQLite result codes; the VFS layer maps
these classes to apsw exceptions.
"""

from __future__ import annotations


class LiteVFSError(Exception):
    """Base class of every error litevfs raises on purpose."""


class LTXFormatError(LiteVFSError, ValueError):
    """An LTX file (or part of one) is malformed: the message names the problem."""


class ChecksumMismatchError(LTXFormatError):
    """An LTX file's CRC-64 does not match its content."""


class ConfigError(LiteVFSError, ValueError):
    """An unknown option or a malformed option value (the message names it)."""


class StorageError(LiteVFSError):
    """Object storage failed in a way retries did not fix."""


class NotFoundError(StorageError, FileNotFoundError):
    """The object (or bucket, or directory) does not exist."""


class BucketNotFoundError(NotFoundError):
    """The bucket named in the replica URL does not exist."""


class AccessDeniedError(StorageError, PermissionError):
    """The credentials were rejected or lack permission."""


class EndpointUnreachableError(StorageError, ConnectionError):
    """The storage endpoint could not be reached."""


class AlreadyExistsError(StorageError, FileExistsError):
    """A conditional create failed because the key exists already."""


class PreconditionFailedError(StorageError):
    """A conditional write (``If-Match``) failed: the object changed since it was read."""


class TransientStorageError(StorageError):
    """A retryable failure (5xx, timeout, reset) that survived every retry."""


class RestoreError(LiteVFSError):
    """No restore plan can produce the requested state."""


class TxNotAvailableError(RestoreError):
    """The replica has no files, or not the requested TXID/timestamp."""


class EmptyReplicaError(TxNotAvailableError):
    """The replica has no LTX files at all (nothing replicated there yet, or a wrong
    path); the message says why when the backend can tell (a missing directory)."""


class NonContiguousError(RestoreError):
    """The LTX files of the replica leave a TXID gap."""


class ConflictError(LiteVFSError):
    """Another writer advanced the replica: our transactions were not uploaded."""


class WriteBufferError(LiteVFSError):
    """The local write buffer cannot be used: unusable directory or file (the message
    names the path and the ``buffer_path`` option), foreign or damaged content."""


class BufferInUseError(WriteBufferError):
    """Another process (or connection set) holds the write buffer: one writer per buffer."""
