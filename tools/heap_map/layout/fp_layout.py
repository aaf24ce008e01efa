"""The heap_map tool's layout kernel (tools/heap_map.py --layout).

One byte a block of the heap, in address order, right after a collection (what a large
allocation meets: it collects before it fails). Upper case: an allocation's first block, by
its type; lower case: data held by another object, by what holds it; "=" the rest of an
allocation, "." a free block (the letters: heap_map.py's LETTERS).

A package of its own, apart from fp_map's, with as few names as it can: each name it has is
interned at boot, in the heap it maps (heap_map.py counts them: own_names()).
"""

import gc
import sys

import machine
from msw_kernel import kernel


@kernel("fp_layout", args=(("start", "uint"), ("size", "uint")))
def fp_layout(start, size):
    # -> [first block's address, blocks, free bytes, largest free run, layout, qstr pools
    # ([alloc, len] each), [[block, class], ...] of the instances, [[block, path], ...] of
    # what lies just below that run]. Its one name of its own is the kernel's: locals and a
    # lambda have none (a module-level table or class would be one more).
    # type name -> letter (ints: a one-letter str would be one more interned name)
    letters = {"tuple": 84, "list": 76, "dict": 68, "str": 83, "bytes": 89, "bytearray": 65,
               "memoryview": 86, "array": 82, "function": 66, "generator": 71, "closure": 67,
               "bound_method": 78, "module": 77, "type": 75, "int": 90, "float": 70,
               "set": 69, "frozenset": 69}
    # machine.mem32, but -1 for a word that is no small int (a ROMFS address): reading it
    # as it is would allocate a long int in the heap being mapped (made before the
    # collection: in the map, not beside it)
    mem = lambda a: -1 if machine.mem16[a + 2] >= 0x4000 else machine.mem32[a]  # noqa: E731
    mem8 = machine.mem8
    gc.collect()
    free = gc.mem_free()
    n = (gc.mem_alloc() + free) // 16
    base = ((start + size) & ~15) - 16 * n  # the first block (gc_init aligns the end)
    atb = bytearray(n // 4)  # the table as the collection left it, before the walk's own
    for i in range(n // 4):
        atb[i] = mem8[start + i]
    import array

    names = {}  # id(type) -> its name: the built-in types, the classes in sys.modules
    for v in ((), [], {}, "", b"", atb, memoryview(b""), array.array("B"), fp_layout, sys,
              int, 1 << 70, 1.5, set(), frozenset((1,)), [].append,
              (lambda: (yield))(), (lambda x: lambda: x)(0)):
        names[id(type(v))] = type(v).__name__
    for k, m in sys.modules.items():
        for t, v in m.__dict__.items():
            if isinstance(v, type) and id(v) not in names:
                names[id(v)] = k + "." + t
    out = bytearray(n)
    for i in range(n):
        out[i] = 46  # "."
    classes = []
    pools = []
    mine = (id(atb), mem(id(atb) + 12))  # the snapshot: its object and its data
    head = -1
    i = 0
    while i <= n:  # every allocation of the snapshot (one step past the end closes the last)
        k = 0 if i == n else (atb[i >> 2] >> (2 * (i & 3))) & 3
        if k != 2 and head >= 0:  # not a tail: the allocation at head ends here
            a = base + 16 * head
            for j in range(head + 1, i):
                out[j] = 61  # "="
            t = mem(a)
            name = names.get(t)
            if a in mine:
                for j in range(head, i):
                    out[j] = 46
            elif name is None:
                v = mem(a + 8)
                if 0 < v < 4096 and mem(a + 16) == a + 24 + 4 * v:  # a qstr pool (py/qstr.h)
                    out[head] = 81  # "Q"
                    pools.append([v, mem(a + 12)])
                elif t >= 0 and not t & 0xFEF8FFFF and t >> 16 & 7:  # a raw code
                    out[head] = 87  # "W"
                else:
                    out[head] = 104  # "h"
            elif "." in name:
                out[head] = 73  # "I" an instance
                classes.append([head, name])
            else:
                out[head] = letters.get(name, 79)  # "O" another type
            head = -1
        if k == 1 or k == 3:
            head = i
        i += 1
    for b in range(n):  # what points at data without a type of its own
        c = out[b]
        a = base + 16 * b
        if c == 66:  # "B" a function: its bytecode
            t, v = mem(a + 12), 98
        elif c == 77:  # "M" a module: its qstr table
            t, v = mem(a + 8), 113
        elif c == 73:  # "I": its members' table
            t, v = mem(a + 12), 105
        elif c == 68 or c == 76 or c == 65 or c == 82 or c == 83 or c == 89:
            t, v = mem(a + 12), c + 32  # a dict's table, a list's items, a buffer's data
        elif c == 81:  # "Q": its names' characters
            for k in range(mem(a + 12)):
                t = mem(a + 24 + 4 * k)
                if base <= t < base + 16 * n and not t & 15 and out[(t - base) >> 4] == 104:
                    out[(t - base) >> 4] = 99  # "c"
            continue
        else:
            continue
        if base <= t < base + 16 * n and not t & 15 and out[(t - base) >> 4] == 104:
            out[(t - base) >> 4] = v
    size = k = 0  # the largest free run
    for b in range(n):
        if out[b] == 46:
            k += 1
            if k > size:
                size = k
        else:
            k = 0
    # the allocations just below the largest free run (what bounds it), each named where a
    # path of at most four steps from a module's globals reaches it
    end = 0
    for b in range(n):
        if out[b] == 46:
            k += 1
            if k == size:
                end = b + 1 - size  # the run's first block
                break
        else:
            k = 0
    want = {}
    b = end - 1
    while b >= 0 and b >= end - 256:
        if 65 <= out[b] <= 90:  # an allocation's first block
            want[base + 16 * b] = None
        b -= 1

    def seek(v, path, depth):
        if id(v) in want and want[id(v)] is None:
            want[id(v)] = path
        if depth == 0:
            return
        t = type(v)
        if t is dict:
            items = v.items()
        elif t is list or t is tuple:
            items = enumerate(v)
        else:
            try:
                items = v.__dict__.items()
            except AttributeError:
                return
        for k, x in items:
            if type(x) is not str and type(x) is not int:
                seek(x, path + "." + str(k), depth - 1)

    for k, m in sys.modules.items():
        seek(m, k, 4)
    return [base, n, free, 16 * size, out, pools, classes,
            [[(a - base) >> 4, p] for a, p in want.items()]]
