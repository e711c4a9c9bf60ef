# _pagecache_lru.pxi: the byte-bounded LRU PageCache.
# Included by _pagecache.pyx (shares its cimports, constants and helpers).


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
        return self._get(key)

    def page_for(self, index, pgno):
        """The cached page of ``pgno`` in ``index`` (a PageIndex), or None.

        Fuses ``index.lookup(pgno)``, the key ``(file_id << 32) | pgno`` and
        ``get(key)``: a page the index maps is a hit (made most recent) or a miss,
        counted as ``get`` counts them; a page absent from the index (or a pgno
        out of range) returns None and counts nothing.
        """
        cdef PageIndex ix
        cdef long long p
        cdef int overflow = 0
        cdef uint64_t key
        if not isinstance(index, PageIndex):
            raise TypeError(f"index must be a PageIndex of the same core, not "
                            f"{type(index).__module__}.{type(index).__qualname__}")
        ix = <PageIndex>index
        if type(pgno) is not int:
            pgno = PyNumber_Index(pgno)
        p = PyLong_AsLongLongAndOverflow(pgno, &overflow)
        if overflow or p <= 0 or p > ix._max:
            return None
        if ix._sizes[p] == 0:  # p <= _max < _capacity
            return None
        key = (<uint64_t>ix._slot_fid[ix._slots[p]] << 32) | <uint64_t>p
        return self._get(key)

    cdef object _get(self, object key):
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
