# _pagecache_codec.pxi: CRC-64/GO-ISO, page-index decoder, page-frame codec.
# Included by _pagecache.pyx (shares its cimports, constants and helpers).


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
