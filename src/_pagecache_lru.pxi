# _pagecache_lru.pxi: the byte-bounded LRU PageCache.
# Included by _pagecache.pyx (shares its cimports, constants and helpers).

from sys import hash_info as _hash_info


# --------------------------------------------------------------------------- PageCache


cdef struct _Bucket:
    uint64_t key
    Py_ssize_t slot  # -1: empty bucket

cdef uint64_t _FIB_MUL = 0x9E3779B97F4A7C15ULL  # 2**64 / golden ratio (Fibonacci hashing)
# hash(n) == n % _HASH_MODULUS for every int n >= 0 (sys.hash_info.modulus)
cdef uint64_t _HASH_MODULUS = _hash_info.modulus


cdef inline bint _u64_key(object key, uint64_t* out) except -1:
    """True, with ``*out`` set, when ``key`` is an exact int in [0, 2**64)."""
    if type(key) is not int:
        return False
    try:
        out[0] = key
    except OverflowError:
        return False
    return True


cdef inline int _require_index(object index) except -1:
    if not isinstance(index, PageIndex):
        raise TypeError(f"index must be a PageIndex of the same core, not "
                        f"{type(index).__module__}.{type(index).__qualname__}")
    return 0


cdef class PageCache:
    """PageCache(capacity)
--

Byte-bounded LRU of decompressed pages keyed by int (no locking: callers hold one).

    Keys that are exact ints in [0, 2**64) (all the reader uses) live in a C
    open-addressing table (linear probing, load <= 1/2, backward-shift deletion)
    mapping key -> slot; any other hashable key lives in a dict. The two never
    hold equal keys (``1.0`` or ``True`` finds the int key 1, as in a dict).
    Per-slot prev/next links, lengths and int keys live in C arrays, values
    (and dict keys) in two lists. A hit on an int key relinks two slots and
    allocates nothing.
    """

    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _nbytes
    cdef Py_ssize_t _hits
    cdef Py_ssize_t _misses
    cdef Py_ssize_t _evictions
    cdef dict _index             # key -> slot, keys that are not ints in [0, 2**64)
    cdef list _keys              # per slot: its dict key (None for a table key)
    cdef list _values
    cdef Py_ssize_t* _prev
    cdef Py_ssize_t* _next
    cdef Py_ssize_t* _len
    cdef uint64_t* _ukey         # per slot: its table key (when _in_table)
    cdef uint8_t* _in_table      # per slot: 1 when its key lives in the table
    cdef Py_ssize_t _nslots      # slots ever handed out (len of _keys/_values)
    cdef Py_ssize_t _slots_cap   # capacity of the C arrays
    cdef Py_ssize_t _head        # most recent, -1 when empty
    cdef Py_ssize_t _tail        # least recent, -1 when empty
    cdef Py_ssize_t _free        # free-slot stack linked through _next, -1 when none
    cdef _Bucket* _table         # _table_cap buckets (a power of two), NULL when 0
    cdef Py_ssize_t _table_cap
    cdef Py_ssize_t _table_count
    cdef int _table_shift        # 64 - log2(_table_cap)

    def __cinit__(self, *args, **kwargs):
        self._prev = NULL
        self._next = NULL
        self._len = NULL
        self._ukey = NULL
        self._in_table = NULL
        self._table = NULL
        self._table_cap = 0
        self._table_count = 0
        self._table_shift = 64
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
        PyMem_RawFree(self._ukey)
        PyMem_RawFree(self._in_table)
        PyMem_RawFree(self._table)

    # -- the int-key table (buckets are always < _table_cap)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef inline Py_ssize_t _table_get(self, uint64_t key) noexcept:
        """The slot of ``key``, or -1."""
        cdef Py_ssize_t i, mask
        cdef _Bucket* b
        if self._table_count == 0:
            return -1
        mask = self._table_cap - 1
        i = <Py_ssize_t>((key * _FIB_MUL) >> self._table_shift)
        while True:  # load <= 1/2: an empty bucket ends every probe
            b = &self._table[i]
            if b.slot < 0:
                return -1
            if b.key == key:
                return b.slot
            i = (i + 1) & mask

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef void _table_insert(self, uint64_t key, Py_ssize_t slot) noexcept:
        """Audited: ``key`` is absent and ``_table_reserve`` made room for it."""
        cdef Py_ssize_t i, mask = self._table_cap - 1
        i = <Py_ssize_t>((key * _FIB_MUL) >> self._table_shift)
        while self._table[i].slot >= 0:
            i = (i + 1) & mask
        self._table[i].key = key
        self._table[i].slot = slot
        self._table_count += 1

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef void _table_delete(self, uint64_t key) noexcept:
        """Remove ``key`` (present) and shift later buckets of its cluster back."""
        cdef Py_ssize_t i, j, home, mask = self._table_cap - 1
        i = <Py_ssize_t>((key * _FIB_MUL) >> self._table_shift)
        while True:
            if self._table[i].slot < 0:
                return  # absent (callers only delete keys they hold)
            if self._table[i].key == key:
                break
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            if self._table[j].slot < 0:
                break
            home = <Py_ssize_t>((self._table[j].key * _FIB_MUL) >> self._table_shift)
            # the bucket at j may move to the hole at i unless its home lies in (i, j]
            if (home > i and home <= j) if i <= j else (home > i or home <= j):
                continue
            self._table[i] = self._table[j]
            i = j
        self._table[i].slot = -1
        self._table_count -= 1

    cdef int _table_reserve(self, Py_ssize_t n) except -1:
        """Room for ``n`` keys at load <= 1/2; all or nothing (MemoryError keeps the table)."""
        cdef Py_ssize_t new_cap, old_cap = self._table_cap, i
        cdef int shift = 64 - 4
        cdef _Bucket* new
        cdef _Bucket* old = self._table
        if 2 * n <= old_cap:
            return 0
        new_cap = 16
        while new_cap < 2 * n:
            new_cap *= 2
            shift -= 1
        new = <_Bucket*>PyMem_RawCalloc(<size_t>new_cap, sizeof(_Bucket))
        if new == NULL:
            raise MemoryError()
        for i in range(new_cap):
            new[i].slot = -1
        self._table = new
        self._table_cap = new_cap
        self._table_shift = shift
        self._table_count = 0
        for i in range(old_cap):
            if old[i].slot >= 0:
                self._table_insert(old[i].key, old[i].slot)
        PyMem_RawFree(old)
        return 0

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
            p = _realloc_array(self._ukey, self._slots_cap, new_cap, sizeof(uint64_t))
            if p == NULL:
                raise MemoryError()
            self._ukey = <uint64_t*>p
            p = _realloc_array(self._in_table, self._slots_cap, new_cap, sizeof(uint8_t))
            if p == NULL:
                raise MemoryError()
            self._in_table = <uint8_t*>p
            self._slots_cap = new_cap
        self._keys.append(None)
        self._values.append(None)
        s = self._nslots
        self._nslots += 1
        return s

    cdef int _remove_slot(self, Py_ssize_t s) except -1:
        """Forget the key of ``s`` and its value, unlink it, put it on the free stack."""
        if self._in_table[s]:
            self._table_delete(self._ukey[s])
        else:
            del self._index[self._keys[s]]
        self._unlink(s)
        self._nbytes -= self._len[s]
        self._keys[s] = None
        self._values[s] = None
        self._next[s] = self._free
        self._free = s
        return 0

    cdef Py_ssize_t _find(self, object key) except -2:
        """The slot holding a key equal to ``key``, or -1 (hashes ``key`` as a dict would)."""
        cdef uint64_t u
        cdef Py_ssize_t s
        if _u64_key(key, &u):
            s = self._table_get(u)
            if s >= 0 or not self._index:
                return s
        found = self._index.get(key)  # an unhashable key raises here
        if found is not None:
            return found
        if self._table_count and type(key) is not int:
            return self._find_equal_int(key)
        return -1

    cdef Py_ssize_t _find_equal_int(self, object key) except -2:
        """The slot of a table key ``n == key`` (``key`` not an int: ``1.0``, ``True``, an int
        subclass...), found as a dict finds it: same hash, then ``n == key``."""
        cdef Py_hash_t h = hash(key)
        cdef uint64_t n
        cdef Py_ssize_t s
        if h < 0 or <uint64_t>h >= _HASH_MODULUS:
            return -1  # no int in [0, 2**64) has this hash
        n = <uint64_t>h
        while True:
            s = self._table_get(n)
            if s >= 0 and n == key and self._table_get(n) == s:  # __eq__ may run any code
                return s
            if n > 0xFFFFFFFFFFFFFFFFULL - _HASH_MODULUS:
                return -1
            n += _HASH_MODULUS

    cdef inline object _hit(self, Py_ssize_t s):
        self._hits += 1
        if s != self._head:
            self._unlink(s)
            self._push_front(s)
        return self._values[s]

    # -- public API

    def get(self, key):
        cdef Py_ssize_t s = self._find(key)
        if s < 0:
            self._misses += 1
            return None
        return self._hit(s)

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
        cdef Py_ssize_t s
        _require_index(index)
        ix = <PageIndex>index
        if type(pgno) is not int:
            pgno = PyNumber_Index(pgno)
        p = PyLong_AsLongLongAndOverflow(pgno, &overflow)
        if overflow or p <= 0 or p > ix._max:
            return None
        if ix._sizes[p] == 0:  # p <= _max < _capacity
            return None
        key = (<uint64_t>ix._slot_fid[ix._slots[p]] << 32) | <uint64_t>p
        s = self._table_get(key)
        if s < 0 and self._index:  # a non-int key equal to this one (get(1.0) finds 1)
            found = self._index.get(key)
            if found is not None:
                s = found
        if s < 0:
            self._misses += 1
            return None
        return self._hit(s)

    def uncached(self, index, pgnos, skip=None):
        """The pages of ``pgnos`` that ``index`` maps but this cache does not hold, and
        whose key is not in ``skip`` (a container of cache keys, e.g. fetches in flight),
        in the order given, as four arrays: page numbers ("I"), file ids ("I"), frame
        offsets ("Q") and frame sizes ("I"). A probe: no LRU change, no counters. This is
        the lookup of prefetch planning, where a scan asks about hundreds of pages."""
        cdef PageIndex ix
        cdef long long p
        cdef int overflow = 0
        cdef uint64_t key
        cdef uint32_t fid
        cdef Py_ssize_t n = 0, cap
        cdef array.array out_p, out_f, out_o, out_s
        _require_index(index)
        ix = <PageIndex>index
        seq = pgnos if type(pgnos) is list or type(pgnos) is tuple else list(pgnos)
        cap = len(seq)
        out_p = array.clone(_ARRAY_I, cap, False)
        out_f = array.clone(_ARRAY_I, cap, False)
        out_o = array.clone(_ARRAY_Q, cap, False)
        out_s = array.clone(_ARRAY_I, cap, False)
        for item in seq:
            if type(item) is not int:
                item = PyNumber_Index(item)
            p = PyLong_AsLongLongAndOverflow(item, &overflow)
            if overflow or p <= 0 or p > ix._max or ix._sizes[p] == 0:
                continue
            fid = ix._slot_fid[ix._slots[p]]
            key = (<uint64_t>fid << 32) | <uint64_t>p
            if self._table_get(key) >= 0:
                continue
            if self._index or skip is not None:  # rare: non-int keys, or fetches in flight
                k = key
                if (self._index and k in self._index) or (skip is not None and k in skip):
                    continue
            out_p.data.as_uints[n] = <uint32_t>p
            out_f.data.as_uints[n] = fid
            out_o.data.as_ulonglongs[n] = ix._offsets[p]
            out_s.data.as_uints[n] = ix._sizes[p]
            n += 1
        array.resize(out_p, n)
        array.resize(out_f, n)
        array.resize(out_o, n)
        array.resize(out_s, n)
        return out_p, out_f, out_o, out_s

    def put(self, key, value):
        cdef Py_ssize_t n, s
        cdef uint64_t u = 0
        cdef bint in_table
        if not isinstance(value, bytes):
            raise TypeError(f"PageCache values must be bytes, not {type(value).__name__!r}")
        in_table = _u64_key(key, &u)
        s = self._find(key)  # an unhashable key raises here
        if s >= 0:
            self._remove_slot(s)
        n = len(<bytes>value)
        if n > self._capacity or self._capacity == 0:
            return
        while self._nbytes > self._capacity - n:
            self._remove_slot(self._tail)
            self._evictions += 1
        if in_table:
            self._table_reserve(self._table_count + 1)
        s = self._new_slot()
        self._values[s] = value
        self._len[s] = n
        self._in_table[s] = in_table
        if in_table:
            self._ukey[s] = u
            self._table_insert(u, s)
        else:
            self._keys[s] = key
            self._index[key] = s
        self._push_front(s)
        self._nbytes += n

    def discard(self, key):
        cdef Py_ssize_t s = self._find(key)
        if s >= 0:
            self._remove_slot(s)

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
        PyMem_RawFree(self._table)
        self._table = NULL
        self._table_cap = 0
        self._table_count = 0
        self._table_shift = 64

    def __len__(self):
        return self._table_count + len(self._index)

    def __contains__(self, key):
        return self._find(key) >= 0

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
        return (f"<PageCache entries={self._table_count + len(self._index)} "
                f"nbytes={self._nbytes} capacity={self._capacity}>")

    def __reduce__(self):
        raise TypeError("PageCache cannot be pickled or copied")
