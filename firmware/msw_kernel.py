"""The kernel registry: what a node can run, each kernel's argument kinds, and its version.

Built-in kernels (kernels.py) and users' kernel packages register the same way:

    from msw_kernel import kernel

    @kernel("histogram", args=(("data", "tarray:B"), ("bins", "uint")),
            cost=lambda data, bins: len(data))
    def histogram(data, bins):
        ...

Argument kinds are the catalog's field kinds (protocol/catalog.py): uint, int, float (an
int is accepted too), bool, tstr, bstr (any bytes-like value), array (a list), tstr[],
map, any; plus typed arrays: "tarray" (any typecode) or "tarray:CODES" (one of the
array.array typecodes in CODES, e.g. "tarray:bhf"; uint8 data may also arrive as bytes).
`cost` is an optional hint: a function of the same arguments that returns the call's work
units (the simulator times one unit on the VM). `sample`, optional, returns an argument
list the calibration can time. `native` names a native module (.mpy built by `microswarm
native build`) whose function of the same name replaces the Python one where it loads.

A kernel's version is a short content hash of the source file that defines it, kept per
module in `versions`: msw_boot.py fills it at boot, microswarm.kernelpkg on the host.

Resident on every node, so it is kept small: an entry is a tuple, kinds are checked where
they are registered on the host (microswarm.kernelpkg), and the registry's writing half
lives in msw_boot.py: the boot's imports, and registering a kernel (`kernel` hands the
decorated function to msw_boot.register; a kernel module loads at boot, or on its first
task, and msw_boot leaves the heap again after it). A module whose manifest lists its
kernels (the firmware's kernels.py) is not imported at boot: msw_boot registers each of
its kernels as a stub (name, module, the native function where the native module serves
it), and the module loads on the first task that names one of them (check and lookup), so
a node joins without its code. The host imports this file as microswarm.firmware.msw_kernel
and also under its plain name, so that user packages import the same registry everywhere.
"""

import array
import gc
import sys

import cbor  # (its typecode(): an array's, on every port; the host registers it by this name)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# BEGIN GENERATED: text numbers (tools/gen_protocol.py, from msw_texts.py)
_TX_KERNEL_TAKES = const(74)
_TX_KERNEL_ARG = const(75)
# END GENERATED

# Builtins named per frame, bound in this module's own table: MicroPython looks a name up
# there before the builtins, and a table grows only once full, so a miss probes every
# slot (0.3-0.5 us a name in the unix VM; docs/firmware.md, "Benchmark").
len = len
isinstance = isinstance
range = range

# An entry: (fn, args ((name, kind), ...) or None, cost, sample, native fn or None, module);
# a stub (module not imported yet): (None, False, None, None, native fn or None, module)
FN, ARGS, COST, SAMPLE, NATIVE, MODULE = 0, 1, 2, 3, 4, 5

KERNELS = {}  # name -> entry
versions = {}  # module (file stem) -> content hash
errors = []  # (module, text) for each package module that failed to load at boot
loading = None  # module stem while msw_boot imports it
native_on = True
# Kernels whose result is a delay: the worker awaits asyncio.sleep_ms(value) before it
# answers, so the kernel itself never blocks the event loop.
WAITS = ("sleep_ms",)
_TYPES = {"uint": int, "int": int, "float": (int, float), "bool": bool, "tstr": str,
          "map": dict, "array": (list, tuple), "tstr[]": (list, tuple)}


def kernel(name, args=None, cost=None, sample=None, native=None):
    """Decorator: register the function as kernel `name` (see the module docstring)."""
    return lambda fn: _boot().register(fn, name, args, cost, sample, native)


def _boot():
    # the registry's writing half (msw_boot.py): loaded while a kernel module loads
    try:
        import msw_boot
    except ImportError:
        from microswarm.firmware import msw_boot
    return msw_boot


def _entry(name):
    # the entry of kernel `name`, its module imported first if it is still a stub (may
    # raise what the import raises: MemoryError on a full heap)
    global loading
    e = KERNELS.get(name)
    if e is not None and e[ARGS] is False:
        loading = e[MODULE]
        # (MicroPython) the module's objects go low in the heap, together, as main.py
        # loads the resident ones: collected before, every 1/16 of the heap while it loads,
        # and after. Loaded between a joined node's objects and its loader's garbage, they
        # were strewn over the free heap: the ESP32 set in the VM then found no 64 KB
        # block for a message after its first task (the heap it needed: 219.7 -> 201.5 KB)
        limit = getattr(gc, "threshold", None)
        was = -1
        if limit is not None:
            gc.collect()
            was = limit()
            limit(gc.mem_free() // 16)
        held = "msw_boot" in sys.modules
        try:
            __import__(e[MODULE])
        finally:
            loading = None
            if not held and sys.implementation.name == "micropython":
                sys.modules.pop("msw_boot", None)  # (its kernels registered: it leaves)
            if limit is not None:
                limit(was)
                gc.collect()
        e = KERNELS.get(name)
    return e


def lookup(name):
    """(function, runs_native) for kernel `name`, or None if this node lacks it."""
    e = _entry(name)
    if e is None:
        return None
    if native_on and e[NATIVE] is not None:
        return e[NATIVE], True
    return e[FN], False


# ---- running a kernel: one implementation for every node's runner (the board worker,
# the host's in-process node), each on the microsecond clock it is given: `ticks_us()`
# and `ticks_diff(new, old)` (time.ticks_us / time.ticks_diff on a board)


def call(fn, args, out, ticks_us, ticks_diff):
    """One kernel call: out[:3] = value, error, elapsed_us (a list the caller keeps: no
    tuple per task); returns out. An exception is the error (MemoryError included: the
    engine maps each to its ErrorCode). A clock that stepped back across the call counts
    as 0 us: RESULT.elapsed_us is a uint (ports/qemu's ticks_us, read as the millisecond
    count plus SysTick's down-counter, goes back up to 1 ms when the counter reloads
    between the two reads; a master refuses a negative one)."""
    start = ticks_us()
    out[0] = out[1] = None
    try:
        out[0] = fn(*args)
    except Exception as e:
        out[1] = e
    out[2] = max(0, ticks_diff(ticks_us(), start))
    return out


def waited(ms, error, cancelled, elapsed_us):
    """The elapsed time a wait kernel (sleep_ms, which returns the `ms` to wait) reports:
    at least the `ms` it waited when it ran to its end (the loop's timer may wake it a
    tick early), else what passed (cut short by CANCEL, or refused), 0 if the clock
    stepped back (`call`)."""
    if error is None and not cancelled and elapsed_us < ms * 1000:
        return ms * 1000
    return max(0, elapsed_us)


def _fits(kind, v):
    t = _TYPES.get(kind)
    if t is not None:
        if isinstance(v, bool) and kind != "bool" or not isinstance(v, t):
            return False
        if kind == "uint":
            return v >= 0
        return kind != "tstr[]" or all(isinstance(x, str) for x in v)
    if kind == "any":
        return True
    # bstr, tarray, tarray:CODES (the codes looked up in place: no slice of `kind`)
    codes = len(kind) > 7 and kind.startswith("tarray:")
    if isinstance(v, array.array):
        return not codes or kind.find(cbor.typecode(v), 7) >= 0
    return (isinstance(v, (bytes, bytearray, memoryview))
            and (not codes or kind.find("B", 7) >= 0))


def check(name, args):
    """None if `args` fit kernel `name`'s declared kinds, else what is wrong, naming the
    argument: a text of msw_texts.py (its number and format arguments; cbor.text renders
    it). A kernel without declared kinds accepts anything here. Loads the kernel's module
    if it is not yet (MemoryError when it does not fit)."""
    e = _entry(name)
    spec = None if e is None else e[ARGS]
    if spec is None:
        return None
    if len(args) != len(spec):
        return (_TX_KERNEL_TAKES, name, len(spec), ", ".join(p[0] for p in spec), len(args))
    for i in range(len(spec)):
        v = args[i]
        if not _fits(spec[i][1], v):
            if isinstance(v, array.array):
                got = "array('" + cbor.typecode(v) + "')"
            elif isinstance(v, int) and not isinstance(v, bool) and v < 0:
                got = "negative int"
            else:
                got = type(v).__name__
            return (_TX_KERNEL_ARG, name, spec[i][0], spec[i][1], got)
    return None
