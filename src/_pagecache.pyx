# cython: language_level=3, embedsignature=True, embedsignature.format=clinic
"""Compiled core of litevfs (built as ``litevfs._pagecache``).

Twin of ``litevfs/_pagecache_py.py``: same public names, argument names,
results, exception classes and messages (``tests/test_core_parity.py``).
Import it through ``litevfs._impl`` (tests and benchmarks excepted).

Safety rules for this file: every input is read through one ``Py_buffer``
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


# --------------------------------------------------------------------------- CRC-64


cdef uint64_t _CRC_TABLE[8][256]


cdef void _crc_init() noexcept:
    cdef uint64_t crc
    cdef int i, j, k
    for i in range(256):
        crc = i
        for j in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xD800000000000000ULL
            else:
                crc >>= 1
        _CRC_TABLE[0][i] = crc
    for i in range(256):
        crc = _CRC_TABLE[0][i]
        for k in range(1, 8):
            crc = _CRC_TABLE[0][crc & 0xFF] ^ (crc >> 8)
            _CRC_TABLE[k][i] = crc


_crc_init()


@cython.boundscheck(False)
@cython.wraparound(False)
cdef uint64_t _crc_update(uint64_t crc, const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Slicing-by-8 CRC-64/ISO (reflected). Audited: reads exactly p[0:n]."""
    cdef uint64_t x
    crc = ~crc
    while n >= 8:
        x = crc ^ ((<uint64_t>p[0]) | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
                   | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
                   | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))
        crc = (_CRC_TABLE[7][x & 0xFF] ^ _CRC_TABLE[6][(x >> 8) & 0xFF]
               ^ _CRC_TABLE[5][(x >> 16) & 0xFF] ^ _CRC_TABLE[4][(x >> 24) & 0xFF]
               ^ _CRC_TABLE[3][(x >> 32) & 0xFF] ^ _CRC_TABLE[2][(x >> 40) & 0xFF]
               ^ _CRC_TABLE[1][(x >> 48) & 0xFF] ^ _CRC_TABLE[0][x >> 56])
        p += 8
        n -= 8
    while n > 0:
        crc = _CRC_TABLE[0][(crc ^ p[0]) & 0xFF] ^ (crc >> 8)
        p += 1
        n -= 1
    return ~crc


def crc64(data, crc=0):
    """CRC-64/GO-ISO of ``data`` continuing from ``crc`` (Go's ``crc64.Update``)."""
    cdef Py_buffer view
    cdef uint64_t c
    _get_bytes(data, &view, "data")
    try:
        crc = PyNumber_Index(crc)
        if not 0 <= crc <= _U64_MAX:
            raise ValueError(f"crc must be an unsigned 64-bit integer, got {crc}")
        c = crc
        if view.len >= 65536:
            with nogil:
                c = _crc_update(c, <const uint8_t*>view.buf, view.len)
        else:
            c = _crc_update(c, <const uint8_t*>view.buf, view.len)
        return c
    finally:
        PyBuffer_Release(&view)


# --------------------------------------------------------------------------- page index


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline int _uvarint(const uint8_t* buf, Py_ssize_t end, Py_ssize_t* pos,
                         uint64_t* out) noexcept nogil:
    """Decode one uvarint at ``pos[0]`` (Go ``binary.Uvarint`` limits).

    Audited: reads only buf[pos[0]:end]. Returns 0 (ok; pos advanced), 1 (data
    ends inside the varint) or 2 (longer than 10 bytes / overflows 64 bits).
    """
    cdef Py_ssize_t i = pos[0]
    cdef Py_ssize_t k = 0
    cdef uint64_t value = 0
    cdef unsigned int shift = 0
    cdef uint8_t b
    while True:
        if i >= end:
            return 1
        b = buf[i]
        if k == 9 and b > 1:
            return 2
        if b < 0x80:
            out[0] = value | (<uint64_t>b << shift)
            pos[0] = i + 1
            return 0
        value |= (<uint64_t>(b & 0x7F)) << shift
        shift += 7
        i += 1
        k += 1


cdef int _varint_error(int rc, Py_ssize_t start) except -1:
    if rc == 1:
        raise LTXFormatError("truncated page index")
    raise LTXFormatError(f"page index varint at offset {start} overflows 64 bits")


cdef int _grow_index_arrays(array.array a, array.array b, array.array c,
                            Py_ssize_t n) except -1:
    array.resize(a, n)
    array.resize(b, n)
    array.resize(c, n)
    return 0


cdef tuple _decode_page_index(const uint8_t* buf, Py_ssize_t end, Py_ssize_t pos):
    cdef array.array pgnos = array.clone(_ARRAY_I, 0, False)
    cdef array.array offsets = array.clone(_ARRAY_Q, 0, False)
    cdef array.array sizes = array.clone(_ARRAY_I, 0, False)
    # every entry takes at least 3 bytes: this bounds the allocation by O(len(data))
    cdef Py_ssize_t limit = (end - pos) // 3 + 1
    cdef Py_ssize_t cap = min(limit, 1024)
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t start
    cdef uint64_t pgno = 0, off = 0, size = 0
    cdef uint64_t prev = 0
    cdef int rc
    _grow_index_arrays(pgnos, offsets, sizes, cap)
    while True:
        start = pos
        rc = _uvarint(buf, end, &pos, &pgno)
        if rc:
            _varint_error(rc, start)
        if pgno == 0:
            break
        if pgno > U32_MAX:
            raise LTXFormatError(f"page number {pgno} out of range in page index")
        if pgno <= prev:
            raise LTXFormatError(f"page index not sorted: page {pgno} after page {prev}")
        start = pos
        rc = _uvarint(buf, end, &pos, &off)
        if rc:
            _varint_error(rc, start)
        if off < <uint64_t>HEADER_SIZE:
            raise LTXFormatError(f"page {pgno}: frame offset {off} is inside the LTX header")
        start = pos
        rc = _uvarint(buf, end, &pos, &size)
        if rc:
            _varint_error(rc, start)
        if size < <uint64_t>PAGE_HEADER_SIZE:
            raise LTXFormatError(f"page {pgno}: frame size {size} is smaller than a page header")
        if size > MAX_FRAME_SIZE:
            raise LTXFormatError(f"page {pgno}: frame size {size} exceeds 2**31")
        if count >= cap:
            cap = max(count + 1, min(2 * cap, limit))
            _grow_index_arrays(pgnos, offsets, sizes, cap)
        # count < cap == len of each array (checked just above)
        pgnos.data.as_uints[count] = <unsigned int>pgno
        offsets.data.as_ulonglongs[count] = off
        sizes.data.as_uints[count] = <unsigned int>size
        count += 1
        prev = pgno
    _grow_index_arrays(pgnos, offsets, sizes, count)
    return pgnos, offsets, sizes, pos


def decode_page_index(data, offset=0):
    """Decode page-index entries from ``data[offset]`` through the 0 terminator.

    Returns ``(pgnos, offsets, sizes, end)``: arrays of typecodes ``I``, ``Q``,
    ``I`` and the position just after the terminator.
    """
    cdef Py_buffer view
    _get_bytes(data, &view, "data")
    try:
        return _decode_page_index(<const uint8_t*>view.buf, view.len,
                                  _offset_arg(offset, view.len))
    finally:
        PyBuffer_Release(&view)


# --------------------------------------------------------------------------- page frames


cdef int64_t _lz4_frame_end(const uint8_t* buf, int64_t pos, int64_t end) noexcept nogil:
    """Walk the LZ4 frame at ``pos`` to just after its end, never reading past ``end``.

    Returns the end position, -1 when the frame runs past ``end`` or -2 for a
    bad magic number. Audited: every read is preceded by a length check.
    """
    cdef uint8_t flg
    cdef uint32_t block
    cdef int64_t block_checksum
    if end - pos < 7:  # magic, FLG, BD, header checksum
        return -1
    if buf[pos] != 0x04 or buf[pos + 1] != 0x22 or buf[pos + 2] != 0x4D or buf[pos + 3] != 0x18:
        return -2
    flg = buf[pos + 4]
    pos += 7
    if flg & 0x08:  # content size
        pos += 8
    if flg & 0x01:  # dictionary id
        pos += 4
    block_checksum = 4 if flg & 0x10 else 0
    while True:
        if pos > end - 4:
            return -1
        block = _le32(buf + pos)
        pos += 4
        if block == 0:  # end mark
            break
        pos += <int64_t>(block & 0x7FFFFFFFU) + block_checksum
    if flg & 0x04:  # content checksum
        pos += 4
    if pos > end:
        return -1
    return pos


cdef tuple _decode_page_frame(Py_buffer* view, object page_size, object offset, object size):
    cdef const uint8_t* buf = <const uint8_t*>view.buf
    cdef Py_ssize_t n = view.len
    cdef Py_ssize_t ps = _page_size_arg(page_size)
    cdef Py_ssize_t pos = _offset_arg(offset, n)
    cdef Py_ssize_t end, start, stop, frame_len
    cdef int64_t walk
    cdef uint32_t pgno
    cdef unsigned int flags
    size = PyNumber_Index(size)
    if size < -1:
        raise ValueError(f"size must be -1 or >= 0, got {size}")
    if size >= 0:
        if size < PAGE_HEADER_SIZE:
            raise LTXFormatError(f"page frame size {size} is smaller than a page header")
        if size > n - pos:
            raise LTXFormatError("truncated page frame")
        end = pos + <Py_ssize_t>size
    else:
        end = n
        if end - pos < PAGE_HEADER_SIZE:
            raise LTXFormatError("truncated page frame header")
    # end - pos >= 6 from here on
    pgno = _be32(buf + pos)
    flags = (<unsigned int>buf[pos + 4] << 8) | buf[pos + 5]
    if pgno == 0:
        if flags == 0:
            raise LTXFormatError("unexpected end-of-pages header (page number 0)")
        raise LTXFormatError("page frame has page number 0")
    if flags & ~PAGE_FLAG_SIZE:
        raise LTXFormatError(f"page {pgno}: invalid page frame flags 0x{flags:04x}")

    if flags & PAGE_FLAG_SIZE:
        if end - pos < PAGE_HEADER_SIZE + SIZE_PREFIX:
            raise LTXFormatError(f"page {pgno}: truncated page frame size prefix")
        start = pos + PAGE_HEADER_SIZE + SIZE_PREFIX
        frame_len = PAGE_HEADER_SIZE + SIZE_PREFIX + <Py_ssize_t>_be32(buf + pos + PAGE_HEADER_SIZE)
        if size >= 0 and frame_len != size:
            raise LTXFormatError(
                f"page {pgno}: frame length {frame_len} does not match the frame size {size}")
        if frame_len > end - pos:
            raise LTXFormatError(f"page {pgno}: truncated page frame")
        payload = PyMemoryView_FromMemory(<char*>buf + start, frame_len - SIZE_PREFIX - PAGE_HEADER_SIZE,
                                          PyBUF_READ)
        try:
            page = _lz4_block.decompress(payload, uncompressed_size=ps)
        except _lz4_block.LZ4BlockError as exc:
            raise LTXFormatError(f"page {pgno}: corrupt LZ4 block: {exc}") from exc
        finally:
            payload.release()
    else:
        start = pos + PAGE_HEADER_SIZE
        walk = _lz4_frame_end(buf, start, end)
        if walk == -2:
            raise LTXFormatError(f"page {pgno}: bad LZ4 frame magic")
        if walk < 0:
            if size >= 0:
                raise LTXFormatError(f"page {pgno}: LZ4 frame runs past the frame size {size}")
            raise LTXFormatError(f"page {pgno}: truncated page frame")
        stop = <Py_ssize_t>walk
        frame_len = stop - pos
        if size >= 0 and frame_len != size:
            raise LTXFormatError(
                f"page {pgno}: frame length {frame_len} does not match the frame size {size}")
        decompressor = _lz4_frame.LZ4FrameDecompressor()
        payload = PyMemoryView_FromMemory(<char*>buf + start, stop - start, PyBUF_READ)
        try:
            page = decompressor.decompress(payload, max_length=ps + 1)
        except (RuntimeError, ValueError) as exc:
            raise LTXFormatError(f"page {pgno}: corrupt LZ4 frame: {exc}") from exc
        finally:
            payload.release()
        if len(page) <= ps and not (decompressor.eof and not decompressor.unused_data):
            raise LTXFormatError(f"page {pgno}: corrupt LZ4 frame: no end mark")
    if len(page) != ps:
        if len(page) > ps:
            raise LTXFormatError(f"page {pgno}: page decompresses to more than {ps} bytes")
        raise LTXFormatError(f"page {pgno}: page decompresses to {len(page)} bytes, expected {ps}")
    return pgno, flags, page, frame_len


def decode_page_frame(data, page_size, offset=0, size=-1):
    """Decode the page frame at ``data[offset]``.

    ``size`` is the frame length from the page index (header included), which
    must match exactly, or -1 to find the length from the frame itself.
    Returns ``(pgno, flags, page, frame_len)``.
    """
    cdef Py_buffer view
    _get_bytes(data, &view, "data")
    try:
        return _decode_page_frame(&view, page_size, offset, size)
    finally:
        PyBuffer_Release(&view)


def encode_page_frame(pgno, page, block=False):
    """Encode one page frame: size-prefixed LZ4 block (``block=True``) or legacy LZ4 frame."""
    cdef Py_buffer view
    cdef Py_ssize_t n
    pgno = PyNumber_Index(pgno)
    if not 1 <= pgno <= _U32_MAX:
        raise ValueError(f"page number {pgno} out of range")
    _get_bytes(page, &view, "page")
    try:
        n = view.len
        if not (MIN_PAGE_SIZE <= n <= MAX_PAGE_SIZE and n & (n - 1) == 0):
            raise ValueError(f"invalid page size {n}")
        src = PyMemoryView_FromMemory(<char*>view.buf, n, PyBUF_READ)
        try:
            if block:
                payload = _lz4_block.compress(src, store_size=False)
                return b"".join((pgno.to_bytes(4, "big"), b"\x00\x01",
                                 len(payload).to_bytes(4, "big"), payload))
            payload = _lz4_frame.compress(
                src, block_size=_lz4_frame.BLOCKSIZE_MAX64KB, block_linked=False,
                content_checksum=True, store_size=False)
            return b"".join((pgno.to_bytes(4, "big"), b"\x00\x00", payload))
        finally:
            src.release()
    finally:
        PyBuffer_Release(&view)


# --------------------------------------------------------------------------- PageIndex


cdef void* _realloc_array(void* p, Py_ssize_t old_n, Py_ssize_t new_n, size_t item) noexcept:
    """Resize a C array to ``new_n`` items, the new tail zeroed. NULL on failure (``p``
    is then left untouched and still owned by the caller).

    Growth goes through calloc + memcpy rather than realloc + memset, so the zero
    tail of a large array stays untouched (lazily mapped) memory until written.
    """
    cdef void* q
    if new_n == 0:
        PyMem_RawFree(p)
        return NULL
    if new_n <= old_n:
        return PyMem_RawRealloc(p, <size_t>new_n * item)
    q = PyMem_RawCalloc(<size_t>new_n, item)
    if q != NULL and old_n > 0:
        memcpy(q, p, <size_t>old_n * item)
        PyMem_RawFree(p)
    return q


cdef class PageIndex:
    """PageIndex()
--

Dense pgno -> (file id, frame offset, frame size) map.

    Storage: three C arrays indexed by pgno (slot 0 unused), 16 bytes per page of
    capacity, grown geometrically (x1.5, or exactly to the largest pgno of a
    merge). A frame size of 0 marks an absent page. Pages store a small internal
    *slot* number per file; each slot knows its file id, max TXID and how many
    pages reference it, and is recycled once nothing does.

    Memory is proportional to the largest pgno merged: callers must reject
    page numbers above the database's commit size before merging.
    """

    cdef uint32_t* _slots
    cdef uint64_t* _offsets
    cdef uint32_t* _sizes
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _count
    cdef Py_ssize_t _max
    # slot tables (C arrays of _nslots_cap entries; _nslots in use or free)
    cdef uint32_t* _slot_fid
    cdef uint64_t* _slot_txid
    cdef Py_ssize_t* _slot_refs
    cdef Py_ssize_t _nslots
    cdef Py_ssize_t _nslots_cap
    cdef dict _slot_of
    cdef list _free

    def __cinit__(self):
        self._slots = NULL
        self._offsets = NULL
        self._sizes = NULL
        self._slot_fid = NULL
        self._slot_txid = NULL
        self._slot_refs = NULL
        self._capacity = 0
        self._count = 0
        self._max = 0
        self._nslots = 0
        self._nslots_cap = 0
        self._slot_of = {}
        self._free = []

    def __init__(self):
        pass

    def __dealloc__(self):
        PyMem_RawFree(self._slots)
        PyMem_RawFree(self._offsets)
        PyMem_RawFree(self._sizes)
        PyMem_RawFree(self._slot_fid)
        PyMem_RawFree(self._slot_txid)
        PyMem_RawFree(self._slot_refs)

    # -- internals

    cdef int _resize(self, Py_ssize_t new) except -1:
        """Set the capacity to ``new`` pages; all or nothing (MemoryError leaves it as is)."""
        cdef void* a
        cdef void* b
        cdef void* c
        cdef Py_ssize_t old = self._capacity
        if new == old:
            return 0
        if new == 0:
            PyMem_RawFree(self._slots)
            PyMem_RawFree(self._offsets)
            PyMem_RawFree(self._sizes)
            self._slots = NULL
            self._offsets = NULL
            self._sizes = NULL
        elif new < old:
            # shrinking in place; should realloc fail, the old (larger) block stays valid
            a = PyMem_RawRealloc(self._slots, <size_t>new * sizeof(uint32_t))
            if a != NULL:
                self._slots = <uint32_t*>a
            b = PyMem_RawRealloc(self._offsets, <size_t>new * sizeof(uint64_t))
            if b != NULL:
                self._offsets = <uint64_t*>b
            c = PyMem_RawRealloc(self._sizes, <size_t>new * sizeof(uint32_t))
            if c != NULL:
                self._sizes = <uint32_t*>c
        else:
            # calloc: the zero tail stays untouched (lazily mapped) until pages land there
            a = PyMem_RawCalloc(<size_t>new, sizeof(uint32_t))
            b = PyMem_RawCalloc(<size_t>new, sizeof(uint64_t))
            c = PyMem_RawCalloc(<size_t>new, sizeof(uint32_t))
            if a == NULL or b == NULL or c == NULL:
                PyMem_RawFree(a)
                PyMem_RawFree(b)
                PyMem_RawFree(c)
                raise MemoryError(f"PageIndex: cannot grow to {new} pages")
            if old:
                memcpy(a, self._slots, <size_t>old * sizeof(uint32_t))
                memcpy(b, self._offsets, <size_t>old * sizeof(uint64_t))
                memcpy(c, self._sizes, <size_t>old * sizeof(uint32_t))
            PyMem_RawFree(self._slots)
            PyMem_RawFree(self._offsets)
            PyMem_RawFree(self._sizes)
            self._slots = <uint32_t*>a
            self._offsets = <uint64_t*>b
            self._sizes = <uint32_t*>c
        self._capacity = new
        return 0

    cdef int _reserve(self, Py_ssize_t needed) except -1:
        if needed <= self._capacity:
            return 0
        return self._resize(max(needed, self._capacity + self._capacity // 2))

    cdef int _shrink(self) except -1:
        cdef Py_ssize_t keep = self._max + 1 if self._max else 0
        if self._capacity > 2 * keep:
            self._resize(keep)
        return 0

    cdef int _check_txid(self, object file_id, object max_txid) except -1:
        cdef Py_ssize_t slot
        found = self._slot_of.get(file_id)
        if found is not None:
            slot = found
            if self._slot_txid[slot] != max_txid:
                raise ValueError(f"file id {file_id} is already in the index with max TXID "
                                 f"{self._slot_txid[slot]}, not {max_txid}")
        return 0

    cdef Py_ssize_t _acquire_slot(self, object file_id, object max_txid) except -1:
        cdef Py_ssize_t slot, new_cap
        cdef void* p
        found = self._slot_of.get(file_id)
        if found is not None:
            return found
        if self._free:
            slot = self._free.pop()
        else:
            if self._nslots == self._nslots_cap:
                new_cap = max(8, 2 * self._nslots_cap)
                p = _realloc_array(self._slot_fid, self._nslots_cap, new_cap, sizeof(uint32_t))
                if p == NULL:
                    raise MemoryError()
                self._slot_fid = <uint32_t*>p
                p = _realloc_array(self._slot_txid, self._nslots_cap, new_cap, sizeof(uint64_t))
                if p == NULL:
                    raise MemoryError()
                self._slot_txid = <uint64_t*>p
                p = _realloc_array(self._slot_refs, self._nslots_cap, new_cap, sizeof(Py_ssize_t))
                if p == NULL:
                    raise MemoryError()
                self._slot_refs = <Py_ssize_t*>p
                self._nslots_cap = new_cap
            slot = self._nslots
            self._nslots += 1
        self._slot_fid[slot] = file_id
        self._slot_txid[slot] = max_txid
        self._slot_refs[slot] = 0
        self._slot_of[file_id] = slot
        return slot

    cdef int _release_unused(self) except -1:
        cdef Py_ssize_t slot
        for file_id, slot_obj in list(self._slot_of.items()):
            slot = slot_obj
            if self._slot_refs[slot] == 0:
                del self._slot_of[file_id]
                self._free.append(slot_obj)
        return 0

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef Py_ssize_t _install(self, const unsigned int* pg, const unsigned long long* off,
                             const unsigned int* sz, Py_ssize_t n, uint32_t slot,
                             uint64_t max_txid) noexcept:
        """Audited: the caller checked 1 <= pg[i] < capacity and sz[i] != 0 for i < n."""
        cdef Py_ssize_t i, installed = 0, added = 0
        cdef uint32_t p, old
        for i in range(n):
            p = pg[i]
            if self._sizes[p]:
                old = self._slots[p]
                if self._slot_txid[old] > max_txid:
                    continue
                self._slot_refs[old] -= 1
            else:
                added += 1
            self._slots[p] = slot
            self._offsets[p] = off[i]
            self._sizes[p] = sz[i]
            installed += 1
        self._slot_refs[slot] += installed
        self._count += added
        return installed

    # -- public API

    def merge(self, file_id, max_txid, pgnos, offsets, sizes):
        """Install one LTX file's entries; a page already held by a file with a
        larger max TXID is kept (newest wins). Returns the number installed."""
        cdef array.array pg, off, sz
        cdef Py_ssize_t n, i, slot, installed
        cdef uint32_t top = 0, p
        cdef bint zero_pgno = False, zero_size = False
        file_id = PyNumber_Index(file_id)
        if not 0 <= file_id <= _U32_MAX:
            raise ValueError(f"file id {file_id} out of range")
        max_txid = PyNumber_Index(max_txid)
        if not 0 <= max_txid <= _U64_MAX:
            raise ValueError(f"max TXID {max_txid} out of range")
        pg = _array_arg("I", pgnos)
        off = _array_arg("Q", offsets)
        sz = _array_arg("I", sizes)
        n = len(pg)
        if len(off) != n or len(sz) != n:
            raise ValueError(
                f"pgnos, offsets and sizes differ in length ({n}, {len(off)}, {len(sz)})")
        if n == 0:
            return 0
        for i in range(n):
            p = pg.data.as_uints[i]
            if p == 0:
                zero_pgno = True
            elif p > top:
                top = p
            if sz.data.as_uints[i] == 0:
                zero_size = True
        if zero_pgno:
            raise ValueError("page number 0 in merge")
        if zero_size:
            raise ValueError("frame size 0 in merge")
        self._check_txid(file_id, max_txid)
        self._reserve(<Py_ssize_t>top + 1)  # before the slot: a MemoryError leaves no trace
        slot = self._acquire_slot(file_id, max_txid)
        installed = self._install(pg.data.as_uints, off.data.as_ulonglongs, sz.data.as_uints,
                                  n, <uint32_t>slot, <uint64_t>max_txid)
        if installed and top > self._max:
            self._max = top
        self._release_unused()
        return installed

    def lookup(self, pgno):
        """``(file_id, frame offset, frame size)`` of ``pgno``, or None."""
        cdef Py_ssize_t p
        cdef uint32_t size
        try:
            p = pgno
        except OverflowError:
            return None
        if p <= 0 or p > self._max:
            return None
        size = self._sizes[p]  # p <= _max < _capacity
        if size == 0:
            return None
        return self._slot_fid[self._slots[p]], self._offsets[p], size

    def truncate(self, commit):
        """Drop every page above ``commit`` (the database shrank)."""
        cdef Py_ssize_t c, p
        commit = PyNumber_Index(commit)
        if commit < 0:
            raise ValueError(f"commit must be >= 0, got {commit}")
        if commit >= self._max:
            return
        c = commit  # < _max, fits
        for p in range(c + 1, self._max + 1):
            if self._sizes[p]:
                self._slot_refs[self._slots[p]] -= 1
                self._slots[p] = 0
                self._offsets[p] = 0
                self._sizes[p] = 0
                self._count -= 1
        p = c
        while p > 0 and not self._sizes[p]:
            p -= 1
        self._max = p
        self._release_unused()
        self._shrink()

    def file_ids(self):
        """File ids still referenced by at least one page."""
        return set(self._slot_of)

    def copy(self):
        cdef PageIndex new = PageIndex.__new__(PageIndex)
        new._resize(self._capacity)
        if self._capacity:
            memcpy(new._slots, self._slots, <size_t>self._capacity * sizeof(uint32_t))
            memcpy(new._offsets, self._offsets, <size_t>self._capacity * sizeof(uint64_t))
            memcpy(new._sizes, self._sizes, <size_t>self._capacity * sizeof(uint32_t))
        new._count = self._count
        new._max = self._max
        if self._nslots_cap:
            new._slot_fid = <uint32_t*>_realloc_array(NULL, 0, self._nslots_cap, sizeof(uint32_t))
            new._slot_txid = <uint64_t*>_realloc_array(NULL, 0, self._nslots_cap, sizeof(uint64_t))
            new._slot_refs = <Py_ssize_t*>_realloc_array(NULL, 0, self._nslots_cap,
                                                         sizeof(Py_ssize_t))
            if new._slot_fid == NULL or new._slot_txid == NULL or new._slot_refs == NULL:
                raise MemoryError()
            memcpy(new._slot_fid, self._slot_fid, <size_t>self._nslots_cap * sizeof(uint32_t))
            memcpy(new._slot_txid, self._slot_txid, <size_t>self._nslots_cap * sizeof(uint64_t))
            memcpy(new._slot_refs, self._slot_refs, <size_t>self._nslots_cap * sizeof(Py_ssize_t))
            new._nslots_cap = self._nslots_cap
        new._nslots = self._nslots
        new._slot_of = dict(self._slot_of)
        new._free = list(self._free)
        return new

    def __len__(self):
        return self._count

    @property
    def max_pgno(self):
        """Largest page number present (0 when empty)."""
        return self._max

    @property
    def nbytes(self):
        """Bytes held by the per-page arrays (16 per page of capacity)."""
        return self._capacity * 16

    def __repr__(self):
        return f"<PageIndex pages={self._count} max_pgno={self._max} files={len(self._slot_of)}>"

    def __reduce__(self):
        raise TypeError("PageIndex cannot be pickled or copied by the copy module: use .copy()")


# --------------------------------------------------------------------------- PageCache


cdef class PageCache:
    """PageCache(capacity)
--

Byte-bounded LRU of decompressed pages keyed by int (no locking: callers hold one).

    A dict maps key -> slot; per-slot prev/next links and lengths live in C
    arrays, keys and values in two lists. A hit relinks two slots and allocates
    nothing.
    """

    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _nbytes
    cdef Py_ssize_t _hits
    cdef Py_ssize_t _misses
    cdef Py_ssize_t _evictions
    cdef dict _index
    cdef list _keys
    cdef list _values
    cdef Py_ssize_t* _prev
    cdef Py_ssize_t* _next
    cdef Py_ssize_t* _len
    cdef Py_ssize_t _nslots      # slots ever handed out (len of _keys/_values)
    cdef Py_ssize_t _slots_cap   # capacity of the C arrays
    cdef Py_ssize_t _head        # most recent, -1 when empty
    cdef Py_ssize_t _tail        # least recent, -1 when empty
    cdef Py_ssize_t _free        # free-slot stack linked through _next, -1 when none

    def __cinit__(self, *args, **kwargs):
        self._prev = NULL
        self._next = NULL
        self._len = NULL
        self._index = {}
        self._keys = []
        self._values = []
        self._nslots = 0
        self._slots_cap = 0
        self._head = -1
        self._tail = -1
        self._free = -1

    def __init__(self, capacity):
        capacity = PyNumber_Index(capacity)
        if not 0 <= capacity <= _I64_MAX:
            raise ValueError(f"capacity must be between 0 and 2**63-1, got {capacity}")
        self._capacity = capacity
        self._nbytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    def __dealloc__(self):
        PyMem_RawFree(self._prev)
        PyMem_RawFree(self._next)
        PyMem_RawFree(self._len)

    # -- list links (slots are always < _nslots <= _slots_cap)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef inline void _unlink(self, Py_ssize_t s) noexcept:
        cdef Py_ssize_t p = self._prev[s], q = self._next[s]
        if p >= 0:
            self._next[p] = q
        else:
            self._head = q
        if q >= 0:
            self._prev[q] = p
        else:
            self._tail = p

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef inline void _push_front(self, Py_ssize_t s) noexcept:
        self._prev[s] = -1
        self._next[s] = self._head
        if self._head >= 0:
            self._prev[self._head] = s
        else:
            self._tail = s
        self._head = s

    cdef Py_ssize_t _new_slot(self) except -1:
        cdef Py_ssize_t s, new_cap
        cdef void* p
        if self._free >= 0:
            s = self._free
            self._free = self._next[s]
            return s
        if self._nslots == self._slots_cap:
            new_cap = max(16, 2 * self._slots_cap)
            p = _realloc_array(self._prev, self._slots_cap, new_cap, sizeof(Py_ssize_t))
            if p == NULL:
                raise MemoryError()
            self._prev = <Py_ssize_t*>p
            p = _realloc_array(self._next, self._slots_cap, new_cap, sizeof(Py_ssize_t))
            if p == NULL:
                raise MemoryError()
            self._next = <Py_ssize_t*>p
            p = _realloc_array(self._len, self._slots_cap, new_cap, sizeof(Py_ssize_t))
            if p == NULL:
                raise MemoryError()
            self._len = <Py_ssize_t*>p
            self._slots_cap = new_cap
        self._keys.append(None)
        self._values.append(None)
        s = self._nslots
        self._nslots += 1
        return s

    cdef void _drop_slot(self, Py_ssize_t s):
        """Unlink ``s``, forget its key and value, put it on the free stack."""
        self._unlink(s)
        self._nbytes -= self._len[s]
        self._keys[s] = None
        self._values[s] = None
        self._next[s] = self._free
        self._free = s

    # -- public API

    def get(self, key):
        cdef Py_ssize_t s
        found = self._index.get(key)
        if found is None:
            self._misses += 1
            return None
        s = found
        self._hits += 1
        if s != self._head:
            self._unlink(s)
            self._push_front(s)
        return self._values[s]

    def put(self, key, value):
        cdef Py_ssize_t n, s
        if not isinstance(value, bytes):
            raise TypeError(f"PageCache values must be bytes, not {type(value).__name__!r}")
        # get() then del, not pop(): dict.pop skips hashing when the dict is
        # empty, and an unhashable key must raise as it does in the pure twin
        old = self._index.get(key)
        if old is not None:
            del self._index[key]
            self._drop_slot(old)
        n = len(<bytes>value)
        if n > self._capacity or self._capacity == 0:
            return
        while self._nbytes > self._capacity - n:
            s = self._tail
            del self._index[self._keys[s]]
            self._drop_slot(s)
            self._evictions += 1
        s = self._new_slot()
        self._keys[s] = key
        self._values[s] = value
        self._len[s] = n
        self._index[key] = s
        self._push_front(s)
        self._nbytes += n

    def discard(self, key):
        old = self._index.get(key)
        if old is not None:
            del self._index[key]
            self._drop_slot(old)

    def clear(self):
        """Drop every entry (the hit/miss/eviction counters are kept)."""
        self._index.clear()
        self._keys = []
        self._values = []
        self._nslots = 0
        self._head = -1
        self._tail = -1
        self._free = -1
        self._nbytes = 0

    def __len__(self):
        return len(self._index)

    def __contains__(self, key):
        return key in self._index

    @property
    def capacity(self):
        return self._capacity

    @property
    def nbytes(self):
        return self._nbytes

    @property
    def hits(self):
        return self._hits

    @property
    def misses(self):
        return self._misses

    @property
    def evictions(self):
        return self._evictions

    def __repr__(self):
        return (f"<PageCache entries={len(self._index)} nbytes={self._nbytes} "
                f"capacity={self._capacity}>")

    def __reduce__(self):
        raise TypeError("PageCache cannot be pickled or copied")


__all__ = [
    "IMPLEMENTATION_NAME", "crc64", "decode_page_index", "decode_page_frame",
    "encode_page_frame", "PageIndex", "PageCache",
]
