# _pagecache_index.pxi: the dense PageIndex.
# Included by _pagecache.pyx (shares its cimports, constants and helpers).


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
