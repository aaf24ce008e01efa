"""The heap_map tool's layout kernel (tools/heap_map.py --layout)."""

import gc
import sys

import machine
from msw_kernel import kernel

_m8 = machine.mem8
_m16 = machine.mem16


class _Words:
    # machine.mem32, but -1 for a word that is no small int (a ROMFS address): reading it
    # as it is would allocate a long int in the heap being mapped
    def __getitem__(self, a):
        return -1 if _m16[a + 2] >= 0x4000 else machine.mem32[a]


_m32 = _Words()


def _names():
    # id(type) -> its name: the built-in types the letters name, and the classes in
    # sys.modules (their instances: "I")
    import array

    names = {}
    for v in ((), [], {}, "", b"", bytearray(1), memoryview(b""), array.array("B"), _names,
              sys, _Words, 1 << 70, 1.5, set(), frozenset((1,)), _Words().__getitem__,
              (lambda: (yield))(), (lambda x: lambda: x)(0)):
        names[id(type(v))] = type(v).__name__
    for mn, m in sys.modules.items():
        for k, v in m.__dict__.items():
            if isinstance(v, type) and id(v) not in names:
                names[id(v)] = mn + "." + k
    return names


# The layout: one byte a block of the heap, in address order, right after a collection
# (what a large allocation meets: it collects before it fails). Upper case: an allocation's
# first block, by its type; lower case: data held by another object, by what holds it;
# "=" the rest of an allocation, "." a free block.
# (Its own package, apart from fp_map's, with few names of its own: what it interns
# lands in the heap it maps.)
_LETTERS = {"tuple": "T", "list": "L", "dict": "D", "str": "S", "bytes": "Y",
            "bytearray": "A", "memoryview": "V", "array": "R", "function": "B",
            "generator": "G", "closure": "C", "bound_method": "N", "module": "M",
            "type": "K", "int": "Z", "float": "F", "set": "E", "frozenset": "E"}
_OWNED = {"D": "d", "L": "l", "A": "a", "R": "a", "S": "s", "Y": "y"}


@kernel("fp_layout", args=(("heap_start", "uint"), ("heap_bytes", "uint")))
def fp_layout(heap_start, heap_bytes):
    gc.collect()
    free = gc.mem_free()
    n = (gc.mem_alloc() + free) // 16
    atb = heap_start
    pool = ((heap_start + heap_bytes) & ~15) - 16 * n
    snap = bytearray(n // 4)  # the table as the collection left it, before the walk's own
    for i in range(n // 4):
        snap[i] = _m8[atb + i]
    mine = id(snap)
    names = _names()
    out = bytearray(n)
    for i in range(n):
        out[i] = 46  # "."
    classes = {}  # block -> class name of an instance
    pools = []  # [alloc, len] of each qstr pool in the heap
    lo = pool
    hi = pool + 16 * n
    head = -1
    i = 0

    def visit(a, blocks):
        b = (a - pool) >> 4
        for j in range(b + 1, b + blocks):
            out[j] = 61  # "="
        t = _m32[a]
        name = names.get(t)
        if a == mine or a == _m32[mine + 12]:  # the snapshot (its object and its data)
            for j in range(b, b + blocks):
                out[j] = 46
            return
        if name is None:
            alloc = _m32[a + 8]
            if 0 < alloc < 4096 and _m32[a + 16] == a + 24 + 4 * alloc:
                out[b] = 81  # "Q" a qstr pool
                pools.append([alloc, _m32[a + 12]])
            elif t >= 0 and not t & 0xFEF8FFFF and t >> 16 & 7:
                out[b] = 87  # "W" a raw code
            else:
                out[b] = 104  # "h"
            return
        if "." in name:
            out[b] = 73  # "I" an instance
            classes[b] = name
        else:
            out[b] = ord(_LETTERS.get(name, "O"))

    # every allocation of the snapshot: its first block and its length in blocks
    while i < n:
        v = snap[i >> 2]
        for s in (0, 2, 4, 6):
            k = (v >> s) & 3
            if k != 2:
                if head >= 0:
                    visit(pool + 16 * head, i - head)
                    head = -1
                if k == 1 or k == 3:
                    head = i
            i += 1
    if head >= 0:
        visit(pool + 16 * head, n - head)

    def owned(p, letter):
        if lo <= p < hi and not p & 15:
            b = (p - pool) >> 4
            if out[b] == 104:
                out[b] = letter

    for b in range(n):  # what points at data without a type of its own
        c = out[b]
        a = pool + 16 * b
        if c == 66:  # "B": its bytecode
            owned(_m32[a + 12], 98)
        elif c == 77:  # "M": its qstr table and constants
            owned(_m32[a + 8], 113)
            owned(_m32[a + 12], 107)
        elif c == 73:  # "I": its members' table
            owned(_m32[a + 12], 105)
        elif c == 81:  # "Q": its names' characters
            for q in range(_m32[a + 12]):
                owned(_m32[a + 24 + 4 * q], 99)
        else:
            x = _OWNED.get(chr(c))
            if x is not None:
                owned(_m32[a + 12], ord(x))  # a dict's table, a list's items, a buffer's data
    # the largest free run
    best = run = 0
    for b in range(n):
        if out[b] == 46:
            run += 1
            if run > best:
                best = run
        else:
            run = 0
    return {"pool": pool, "blocks": n, "free": free, "largest_free": 16 * best,
            "layout": out, "pools": pools, "classes": [[b, c] for b, c in classes.items()]}
