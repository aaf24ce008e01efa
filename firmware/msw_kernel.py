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

A kernel's version is a short content hash of the source file that defines it (the first
12 hex digits of its SHA-256), kept per module in `versions`. At boot msw_boot.py fills it
(from the .py file itself, or on a board holding .mpy files from the `kpkg_*.json`
manifest the deploy wrote) and imports the packages; on the host, microswarm.kernelpkg
does. The hash covers the whole file: any edit makes a new version of its kernels.

Resident on the node, so kept small: an entry is a list, not an object. Runs on boards,
in the unix-port VM and in CPython (the host imports this file as
microswarm.firmware.msw_kernel and also under its plain name, so that user packages
import the same registry everywhere).
"""

import array

HASH_HEX = 12
KINDS = ("uint", "int", "float", "bool", "tstr", "bstr", "array", "tstr[]", "map", "any",
         "tarray")

# An entry: [fn, args ((name, kind), ...) or None, cost, sample, native fn, module, builtin]
FN, ARGS, COST, SAMPLE, NATIVE, MODULE, BUILTIN = 0, 1, 2, 3, 4, 5, 6

KERNELS = {}  # name -> entry
FUNCS = {}  # name -> the Python function (kernels.KERNELS is this dict)
versions = {}  # module stem -> content hash
errors = []  # (module, text) for each package module that failed to load at boot
loading = None  # module stem while msw_boot imports it
_builtin = False
_use_native = True


def _stem(path):
    name = path[path.rfind("/") + 1:]
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


def module_of(fn):
    """The file stem of the module that defines `fn` ("kernels", "histogram")."""
    try:
        return _stem(fn.__globals__["__file__"])
    except (AttributeError, KeyError, TypeError):
        return loading


def _kind_ok(kind):
    if kind in KINDS:
        return True
    if kind[:7] != "tarray:" or len(kind) == 7:
        return False
    for code in kind[7:]:
        if code not in "BHIQbhiqfd":
            return False
    return True


def kernel(name, args=None, cost=None, sample=None, native=None):
    """Decorator: register the function as kernel `name` (see the module docstring)."""

    def register(fn):
        add(name, fn, args, cost, sample, native)
        return fn

    return register


def add(name, fn, args=None, cost=None, sample=None, native=None):
    """Register `fn` as kernel `name`; `args` is a sequence of (argument name, kind)."""
    if not isinstance(name, str) or not name:
        raise ValueError("a kernel name must be a non-empty string")
    for pair in args or ():
        if not _kind_ok(pair[1]):
            raise ValueError("unknown argument kind " + repr(pair[1]))
    module = module_of(fn)
    old = KERNELS.get(name)
    if old is not None and old[MODULE] != module:
        raise ValueError("kernel " + name + " is already defined in " + str(old[MODULE]))
    native_fn = None
    if native:
        try:
            native_fn = getattr(__import__(native), name, None)
        except (ImportError, ValueError):  # ValueError: built for another architecture
            pass
    KERNELS[name] = [fn, args, cost, sample, native_fn, module, _builtin]
    FUNCS[name] = fn


def builtins(on):
    """kernels.py marks its own registrations as built-in (the documented set)."""
    global _builtin
    _builtin = bool(on)


def set_native(enabled):
    global _use_native
    _use_native = bool(enabled)


def names():
    return sorted(KERNELS)


def builtin_names():
    return sorted(n for n in KERNELS if KERNELS[n][BUILTIN])


def native_names():
    if not _use_native:
        return []
    return sorted(n for n in KERNELS if KERNELS[n][NATIVE] is not None)


def lookup(name):
    """(function, runs_native) for kernel `name`, or None if this node lacks it."""
    entry = KERNELS.get(name)
    if entry is None:
        return None
    if _use_native and entry[NATIVE] is not None:
        return entry[NATIVE], True
    return entry[FN], False


def version(name):
    """The version hash of kernel `name` here, or None."""
    entry = KERNELS.get(name)
    return None if entry is None else versions.get(entry[MODULE])


def hashes():
    """Kernel name -> version hash, for every kernel whose version is known."""
    out = {}
    for name in KERNELS:
        h = versions.get(KERNELS[name][MODULE])
        if h:
            out[name] = h
    return out


# ---- argument checking ----------------------------------------------------------------


def _typecode(a):
    try:
        return a.typecode
    except AttributeError:  # MicroPython: repr of an empty slice is "array('x')"
        return repr(a[:0])[7]


def _fits(kind, v):
    if kind == "any":
        return True
    if isinstance(v, bool):
        return kind == "bool"
    if kind == "uint":
        return isinstance(v, int) and v >= 0
    if kind == "int":
        return isinstance(v, int)
    if kind == "float":
        return isinstance(v, (int, float))
    if kind == "tstr":
        return isinstance(v, str)
    if kind == "array" or kind == "tstr[]":
        if not isinstance(v, (list, tuple)):
            return False
        return kind == "array" or all(isinstance(x, str) for x in v)
    if kind == "map":
        return isinstance(v, dict)
    if isinstance(v, array.array):  # bstr, tarray, tarray:CODES
        return kind[:7] != "tarray:" or _typecode(v) in kind[7:]
    if isinstance(v, (bytes, bytearray, memoryview)):
        return kind[:7] != "tarray:" or "B" in kind[7:]
    return False


def _describe(v):
    if isinstance(v, array.array):
        return "array('" + _typecode(v) + "')"
    if isinstance(v, int) and not isinstance(v, bool) and v < 0:
        return "negative int"
    return type(v).__name__


def check(name, args):
    """None if `args` fit kernel `name`'s declared kinds, else what is wrong, naming the
    argument. A kernel without declared kinds accepts anything here."""
    entry = KERNELS.get(name)
    if entry is None or entry[ARGS] is None:
        return None
    spec = entry[ARGS]
    if len(args) != len(spec):
        return (name + " takes " + str(len(spec)) + " arguments ("
                + ", ".join(p[0] for p in spec) + "), got " + str(len(args)))
    for i in range(len(spec)):
        if not _fits(spec[i][1], args[i]):
            return (name + ": argument " + spec[i][0] + " must be " + spec[i][1] + ", got "
                    + _describe(args[i]))
    return None
