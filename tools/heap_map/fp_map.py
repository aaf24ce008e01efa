import gc
import sys

import machine
from msw_kernel import kernel

_m8 = machine.mem8
_m16 = machine.mem16


class _Words:
    # machine.mem32, but -1 for a word that is no small int (a ROMFS address: 0x60C00000
    # on the AN500): reading it as it is would allocate a long int in the heap being mapped
    def __getitem__(self, a):
        return -1 if _m16[a + 2] >= 0x4000 else machine.mem32[a]


_m32 = _Words()


def _walk(atb, pool, n, visit):
    # every allocation of the heap: its first block and its length in blocks
    head = -1
    i = 0
    while i < n:
        b = _m8[atb + (i >> 2)]
        for s in (0, 2, 4, 6):
            k = (b >> s) & 3
            if k != 2:  # not a tail: the allocation before ends here
                if head >= 0:
                    visit(pool + 16 * head, i - head)
                    head = -1
                if k == 1 or k == 3:
                    head = i
            i += 1
    if head >= 0:
        visit(pool + 16 * head, n - head)


def _names():
    def f():
        pass

    def g():
        yield

    def c():
        x = 0

        def h():
            return x

        return h

    class K:
        def m(self):
            pass

    import array

    names = {}
    for v in ((), [], {}, "", b"", bytearray(1), memoryview(b""), array.array("B"), f, g(),
              c(), K().m, sys, K, 1 << 70, 1.5, set(), frozenset((1,)), iter(()), range(1),
              iter([]), iter({}), iter(""), iter(b"")):
        t = type(v)
        names[id(t)] = t.__name__
    names[id(K)] = None
    for mn, m in sys.modules.items():
        for k, v in m.__dict__.items():
            if isinstance(v, type) and id(v) not in names:  # (not `str = str`)
                names[id(v)] = mn + "." + k
    return names


@kernel("fp_map", args=(("heap_start", "uint"), ("heap_bytes", "uint")))
def fp_map(heap_start, heap_bytes):
    gc.collect()
    used = gc.mem_alloc()
    n = (gc.mem_alloc() + gc.mem_free()) // 16
    atb = heap_start
    pool = ((heap_start + heap_bytes) & ~15) - 16 * n  # gc_init aligns the end
    lo = pool
    hi = pool + 16 * n
    names = _names()
    fn_t = id(type(_walk))
    mod_t = id(type(sys))
    owned = {"dict": "dict table", "list": "list items", "bytearray": "bytearray data",
             "array": "array data", "str": "str data", "bytes": "bytes data"}
    holder = {}  # address -> what holds it (a class's instance, a module's globals)
    what = {}  # address -> what it is, for allocations without a type of their own

    def first(a, blocks):
        t = _m32[a]
        if t == mod_t:
            holder[_m32[a + 4]] = "globals"
            return
        name = names.get(t)
        if name is None or "." not in name or not lo <= t < hi:  # (classes of C: no members)
            return
        table = _m32[a + 12]
        if not lo <= table < hi or table & 3:
            return
        for e in range(_m32[a + 8]):
            v = _m32[table + 8 * e + 4]
            if lo <= v < hi and not v & 3 and names.get(_m32[v]) in owned:
                holder[v] = name  # (only what says whose it is: a buffer, a table)

    _walk(atb, pool, n, first)
    gc.collect()
    cache = {}  # (label, holder) -> "label (holder)": each string made once

    def label(kind, h):
        if h is None:
            return kind
        c = cache.get(kind)
        if c is None:
            c = cache[kind] = {}
        s = c.get(h)
        if s is None:
            s = c[h] = kind + " (" + h + ")"
        return s

    def mark(p, kind):
        if lo <= p < hi:
            what[p] = kind

    def second(a, blocks):
        t = _m32[a]  # (what it points at is kept only where that lies in the heap)
        if t == mod_t:  # a module's context: its tables of names and constants
            mark(_m32[a + 8], "qstr table")
            mark(_m32[a + 12], "constants")
            return
        if t == fn_t:
            mark(_m32[a + 12], "bytecode")
            mark(_m32[a + 8], "child table")
            return
        name = names.get(t)
        if name is None:
            alloc = _m32[a + 8]
            if 0 < alloc < 4096 and _m32[a + 16] == a + 24 + 4 * alloc:  # a qstr pool
                # (py/qstr.h: prev, its total, alloc, len, hashes, lengths, then the
                # names' pointers; the hashes follow those in the same allocation)
                what[a] = "qstr pool"
                for q in range(_m32[a + 12]):
                    q = _m32[a + 24 + 4 * q]
                    if lo <= q < hi and not q & 15:  # where a chunk of names' characters
                        what[q] = "qstr chars"  # may start: a block's start
            return
        if "." in name:
            if lo <= t < hi:
                mark(_m32[a + 12], label("members", name))
        elif name in owned:
            mark(_m32[a + 12], label(owned[name], holder.get(a)))

    _walk(atb, pool, n, second)
    gc.collect()
    count = {}
    size = {}
    top_size = [0] * 40
    top_name = [None] * 40
    own = {}

    def third(a, blocks):
        if a in own:
            return
        t = _m32[a]
        name = names.get(t)
        if name is None:
            name = what.get(a)
            if name is None:  # a raw code (py/emitglue.h): two 0 bytes, kind, generator
                name = "raw code" if t >= 0 and not t & 0xFEF8FFFF and t >> 16 & 7 else "other"
        elif "." in name:
            name = label("instance", name)
        elif name == "type":
            name = "class"
        elif name in owned:
            name = label(name, holder.get(a))
        count[name] = count.get(name, 0) + 1
        size[name] = size.get(name, 0) + 16 * blocks
        if 16 * blocks > top_size[-1]:
            i = len(top_size) - 1
            while i > 0 and top_size[i - 1] < 16 * blocks:
                top_size[i] = top_size[i - 1]
                top_name[i] = top_name[i - 1]
                i -= 1
            top_size[i] = 16 * blocks
            top_name[i] = name

    def mine(v):  # a str the walk made (not an interned name: no heap object)
        if lo <= id(v) < hi:
            own[id(v)] = 1
            own[_m32[id(v) + 12]] = 1

    _walk(atb, pool, n, third)  # the labels' strings and the tables at their full size
    for d in (count, size):
        for k in d:
            d[k] = 0
    for i in range(len(top_size)):
        top_size[i] = 0
        top_name[i] = None
    gc.collect()
    for o in (names, holder, what, count, size, cache, own, top_size, top_name, owned):
        own[id(o)] = 1
        own[_m32[id(o) + 12]] = 1  # its table (a dict's) or items (a list's)
    for c in cache.values():
        own[id(c)] = 1
        own[_m32[id(c) + 12]] = 1
        for v in c.values():  # the labels: a str and its characters
            mine(v)
    for v in names.values():
        mine(v)
    table = 0
    while table != _m32[id(own) + 12]:  # own's own table, once it no longer grows
        table = _m32[id(own) + 12]
        own[table] = 1
    mine = gc.mem_alloc() - used
    _walk(atb, pool, n, third)
    return {"used_before": used, "mapped": sum(size.values()), "walk_own": mine, "blocks": n,
            "types": {k: [count[k], size[k]] for k in size if count[k]},
            "big": [[top_size[i], top_name[i]] for i in range(len(top_size)) if top_size[i]]}

