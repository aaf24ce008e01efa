"""The kernel registry: what a node can run, each kernel's argument kinds, and its version.

Built-in kernels (kernels.py) and users' kernel packages register the same way:

    from msw_kernel import kernel

    @kernel("histogram", args=[("data", "tarray:B"), ("bins", "uint")],
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
native build`) whose function of the same name replaces the Python one when it loads.

A kernel's version is a short content hash of the source file that defines it: the first
12 hex digits of its SHA-256. Where that file is a .py source the node hashes it itself;
a board holding compiled .mpy files takes the source hashes from the `kpkg_<package>.json`
manifest the deploy writes next to them. The hash covers the whole file: any edit to it
makes a new version of every kernel in it. The manifests also say which modules to import
at boot (`load_installed`).

Runs on boards, in the unix-port VM and in CPython (the host imports this file as
microswarm.firmware.msw_kernel and also under the plain name, so user packages import the
same registry everywhere).
"""

import array
import hashlib
import json
import sys

try:
    import os
except ImportError:  # very small ports
    os = None

HASH_HEX = 12
MANIFEST_PREFIX = "kpkg_"
KINDS = ("uint", "int", "float", "bool", "tstr", "bstr", "array", "tstr[]", "map", "any",
         "tarray")


class Kernel:
    __slots__ = ("name", "fn", "params", "kinds", "cost", "sample", "native", "module",
                 "builtin", "native_fn")

    def __init__(self, name, fn, params, kinds, cost, sample, native, module, builtin):
        self.name = name
        self.fn = fn
        self.params = params  # tuple of argument names, or None (not declared)
        self.kinds = kinds
        self.cost = cost
        self.sample = sample
        self.native = native  # native module name, or None
        self.module = module  # file stem of the defining module ("kernels", "histogram")
        self.builtin = builtin
        self.native_fn = None


KERNELS = {}  # name -> Kernel
FUNCS = {}  # name -> the Python function (kernels.KERNELS is this dict)
errors = []  # (module, text) for each package module that failed to load
_manifest = {}  # module stem -> hash, from kpkg_*.json
_file_hashes = {}  # .py path -> hash
_natives = {}  # native module name -> module, or None when it does not load here
_loading = None  # module stem while load_module() imports it
_builtin = False
_use_native = True


def _stem(path):
    slash = path.rfind("/")
    name = path[slash + 1:]
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


def _module_of(fn):
    try:
        return _stem(fn.__globals__["__file__"])
    except (AttributeError, KeyError, TypeError):
        return _loading


def _check_kind(kind):
    if kind in KINDS:
        return
    if kind.startswith("tarray:") and len(kind) > 7:
        for code in kind[7:]:
            if code not in "BHIQbhiqfd":
                raise ValueError("unknown typecode " + code + " in kind " + kind)
        return
    raise ValueError("unknown argument kind " + repr(kind))


def kernel(name, args=None, cost=None, sample=None, native=None):
    """Decorator: register the function as kernel `name` (see the module docstring)."""

    def register(fn):
        add(name, fn, args, cost, sample, native)
        return fn

    return register


def add(name, fn, args=None, cost=None, sample=None, native=None):
    """Register `fn` as kernel `name`; `args` is a list of (argument name, kind)."""
    if not isinstance(name, str) or not name:
        raise ValueError("a kernel name must be a non-empty string")
    params = kinds = None
    if args is not None:
        params = []
        kinds = []
        for pair in args:
            arg_name, kind = pair
            _check_kind(kind)
            params.append(arg_name)
            kinds.append(kind)
        params = tuple(params)
        kinds = tuple(kinds)
    module = _module_of(fn)
    old = KERNELS.get(name)
    if old is not None and old.module != module:
        raise ValueError("kernel " + name + " is already defined in " + str(old.module))
    entry = Kernel(name, fn, params, kinds, cost, sample, native, module, _builtin)
    if native:
        entry.native_fn = getattr(_native_module(native), name, None)
    KERNELS[name] = entry
    FUNCS[name] = fn
    return entry


def builtins(on):
    """kernels.py marks its own registrations as built-in (the documented set)."""
    global _builtin
    _builtin = bool(on)


def _native_module(name):
    if name not in _natives:
        try:
            _natives[name] = __import__(name)
        except (ImportError, ValueError):  # ValueError: built for another architecture
            _natives[name] = None
    return _natives[name]


def set_native(enabled):
    global _use_native
    _use_native = bool(enabled)


# ---- queries --------------------------------------------------------------------------


def names():
    return sorted(KERNELS)


def builtin_names():
    return sorted(n for n in KERNELS if KERNELS[n].builtin)


def native_names():
    if not _use_native:
        return []
    return sorted(n for n in KERNELS if KERNELS[n].native_fn is not None)


def lookup(name):
    """(function, runs_native) for kernel `name`, or None if this node lacks it."""
    entry = KERNELS.get(name)
    if entry is None:
        return None
    if _use_native and entry.native_fn is not None:
        return entry.native_fn, True
    return entry.fn, False


# ---- argument checking ----------------------------------------------------------------


def _typecode(a):
    try:
        return a.typecode
    except AttributeError:  # MicroPython: repr of an empty slice is "array('x')"
        return repr(a[:0])[7]


def _bytes_like(v):
    return isinstance(v, (bytes, bytearray, memoryview))


def _fits(kind, v):
    if kind == "any":
        return True
    if kind == "uint":
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "tstr":
        return isinstance(v, str)
    if kind == "bstr":
        return _bytes_like(v) or isinstance(v, array.array)
    if kind == "array":
        return isinstance(v, (list, tuple))
    if kind == "tstr[]":
        if not isinstance(v, (list, tuple)):
            return False
        for item in v:
            if not isinstance(item, str):
                return False
        return True
    if kind == "map":
        return isinstance(v, dict)
    if kind == "tarray":
        return isinstance(v, array.array) or _bytes_like(v)
    # "tarray:CODES"
    if isinstance(v, array.array):
        return _typecode(v) in kind[7:]
    return _bytes_like(v) and "B" in kind[7:]


def _describe(v):
    if isinstance(v, array.array):
        return "array('" + _typecode(v) + "')"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "negative int" if v < 0 else "int"
    return type(v).__name__


def check(name, args):
    """None if `args` fit kernel `name`'s declared kinds, else what is wrong, naming the
    argument. A kernel without declared kinds accepts anything here."""
    entry = KERNELS.get(name)
    if entry is None or entry.kinds is None:
        return None
    kinds = entry.kinds
    if len(args) != len(kinds):
        return (name + " takes " + str(len(kinds)) + " arguments (" + ", ".join(entry.params)
                + "), got " + str(len(args)))
    for i in range(len(kinds)):
        if not _fits(kinds[i], args[i]):
            return (name + ": argument " + entry.params[i] + " must be " + kinds[i]
                    + ", got " + _describe(args[i]))
    return None


# ---- versions -------------------------------------------------------------------------


def file_hash(path):
    """Short content hash of a file (the version of the kernels it defines)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(512)
            if not block:
                break
            h.update(block)
    return _hex(h.digest())[:HASH_HEX]


def _hex(data):
    return "".join("%02x" % b for b in data)


def _module_hash(entry):
    """The defining file's own hash where it is a .py source (the truth, even if a
    manifest beside it is stale), else the manifest's (a board holding .mpy files)."""
    try:
        path = entry.fn.__globals__["__file__"]
    except (AttributeError, KeyError, TypeError):
        path = ""
    if path.endswith(".py"):
        known = _file_hashes.get(path)
        if known is None:
            try:
                known = _file_hashes[path] = file_hash(path)
            except OSError:
                known = None
        if known:
            return known
    if entry.module is None:
        return None
    return _manifest.get(entry.module)


def hashes():
    """Kernel name -> version hash, for every kernel whose version is known."""
    out = {}
    for name in KERNELS:
        h = _module_hash(KERNELS[name])
        if h:
            out[name] = h
    return out


def version(name):
    """The version hash of kernel `name` here, or None."""
    entry = KERNELS.get(name)
    return None if entry is None else _module_hash(entry)


# ---- packages -------------------------------------------------------------------------


def load_module(stem, hash_=None):
    """Import one kernel module by name; its kernels register as it runs."""
    global _loading
    if hash_:
        _manifest[stem] = hash_
    _loading = stem
    try:
        __import__(stem)
    finally:
        _loading = None


def load_installed(folder=""):
    """Import every module named by a kpkg_*.json manifest in `folder` (the board's
    flash). A module that fails is left out and noted in `errors`; the node still boots.
    Returns the names of the manifests read."""
    if os is None:
        return []
    try:
        listing = os.listdir(folder or ".")
    except OSError:
        return []
    read = []
    for fname in sorted(listing):
        if not (fname.startswith(MANIFEST_PREFIX) and fname.endswith(".json")):
            continue
        path = (folder + "/" + fname) if folder else fname
        try:
            with open(path) as f:
                doc = json.load(f)
            modules = doc["modules"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            errors.append((fname, "bad manifest: " + str(e)))
            continue
        read.append(fname)
        for stem in sorted(modules):
            _manifest[stem] = modules[stem]
        for stem in sorted(modules):
            if stem in sys.modules:
                continue
            try:
                load_module(stem)
            except Exception as e:  # a user's module: keep the node up without it
                errors.append((stem, type(e).__name__ + ": " + str(e)))
    return read

