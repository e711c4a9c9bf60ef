# cython: language_level=3, embedsignature=True, embedsignature.format=clinic
"""Compiled core of litevfs (built as ``litevfs._pagecache``).

Twin of ``litevfs/_pagecache_py.py``: same public names, argument names,
results, exception classes and messages (``tests/test_core_parity.py``).
Import it through ``litevfs._impl`` (tests and benchmarks excepted).

Parts: ``_pagecache_codec.pxi`` (CRC-64, page index, page frames),
``_pagecache_index.pxi`` (PageIndex), ``_pagecache_lru.pxi`` (PageCache).

Safety rules for these files: every input is read through one ``Py_buffer``
(``_get_bytes``) whose length is checked before any raw pointer access;
``boundscheck``/``wraparound`` are turned off only on the small audited helpers
marked "audited" below; argument values are range-checked as Python ints
before they are converted to C integers.
"""

cimport cython
from cpython cimport array
from cpython.buffer cimport (
    PyBUF_READ, PyBUF_SIMPLE, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer,
)
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree, PyMem_RawRealloc
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.number cimport PyNumber_Index
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

import array
import lz4.block as _lz4_block
import lz4.frame as _lz4_frame

from litevfs.errors import LTXFormatError

IMPLEMENTATION_NAME = "cython"

# Repeated from litevfs.ltx.format (importing litevfs.ltx here would be a cycle:
# its decoder imports _impl, which imports this module).
cdef Py_ssize_t HEADER_SIZE = 100
cdef Py_ssize_t PAGE_HEADER_SIZE = 6
cdef Py_ssize_t SIZE_PREFIX = 4
cdef unsigned int PAGE_FLAG_SIZE = 0x0001
cdef Py_ssize_t MIN_PAGE_SIZE = 512
cdef Py_ssize_t MAX_PAGE_SIZE = 65536
cdef uint64_t MAX_FRAME_SIZE = 1U << 31
cdef uint64_t U32_MAX = 0xFFFFFFFFU

_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_I64_MAX = 0x7FFF_FFFF_FFFF_FFFF

cdef array.array _ARRAY_I = array.array("I")
cdef array.array _ARRAY_Q = array.array("Q")
if _ARRAY_I.itemsize != 4 or _ARRAY_Q.itemsize != 8:  # pragma: no cover - exotic ABI
    raise ImportError("litevfs._pagecache needs array('I') of 4 bytes and array('Q') of 8")


# --------------------------------------------------------------------------- helpers


cdef int _get_bytes(object data, Py_buffer* view, str what) except -1:
    """Acquire a contiguous byte buffer of ``data`` (a non-contiguous one is copied).

    The caller must ``PyBuffer_Release(view)``.
    """
    if not PyObject_CheckBuffer(data):
        raise TypeError(f"{what} must be a bytes-like object, not {type(data).__name__!r}")
    try:
        PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    except BufferError:
        PyObject_GetBuffer(memoryview(data).tobytes(), view, PyBUF_SIMPLE)
    return 0


cdef Py_ssize_t _offset_arg(object offset, Py_ssize_t n) except -1:
    """A non-negative offset, clamped to ``n`` (past the end reads as truncated)."""
    offset = PyNumber_Index(offset)
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if offset > n:
        return n
    return offset


cdef Py_ssize_t _page_size_arg(object page_size) except -1:
    value = PyNumber_Index(page_size)
    if not (MIN_PAGE_SIZE <= value <= MAX_PAGE_SIZE and value & (value - 1) == 0):
        raise LTXFormatError(f"invalid page size {value}")
    return value


cdef array.array _array_arg(str typecode, object values):
    if type(values) is array.array and values.typecode == typecode:
        return values
    return array.array(typecode, values)


cdef inline uint32_t _be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t _le32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]


include "_pagecache_codec.pxi"
include "_pagecache_index.pxi"
include "_pagecache_lru.pxi"


__all__ = [
    "IMPLEMENTATION_NAME", "crc64", "decode_page_index", "decode_page_frame",
    "encode_page_frame", "PageIndex", "PageCache",
]
