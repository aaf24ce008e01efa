"""The kernel registry's writing half (msw_kernel.py is the half a node keeps): import the
kernel packages on the flash, register each kernel (msw_kernel.kernel's decorator hands its
function to register()) and settle every kernel module's version; and what HELLO says of
the kernels (hello_fields). main.py runs it once and drops it; a kernel module that loads
on its first task and each session's HELLO load it again and drop it, so none of this stays
in a board's heap.

A package on the flash is its modules plus a manifest `kpkg_<package>.json`:
{"package": name, "modules": {module: source hash}} (the deploy writes it; the firmware's
own, kpkg_firmware.json, names kernels.py). Every module a manifest names is imported, in
order of manifest then module name; one that fails is left out and noted in
msw_kernel.errors, and the node still boots. A module's version is the hash of its .py
file when the flash holds the source (the truth, even if a manifest is stale), else the
manifest's (a board holding .mpy files).

A manifest may also list a module's kernels, {"kernels": {module: {kernel: native module
or null}}} (the firmware's does, for kernels.py): such a module is not imported here; its
kernels are registered as stubs (stub()) and it loads on the first task that
names one of them, so its code is not in the heap while the node joins and idles.
"""

import hashlib
import json
import os
import sys

import msw_kernel

MANIFEST_PREFIX = "kpkg_"
# sys.implementation._mpy's arch field (bits 10-13), by number (py/persistentcode.h)
MPY_ARCHES = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
              "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")
HASH_HEX = 12  # hex digits of SHA-256 that name a version
_stubs = {}  # module -> the registry entry its stubs without a native function share


def file_hash(path):
    """Short content hash of a file: the first 12 hex digits of its SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(512)
            if not block:
                break
            h.update(block)
    return "".join("%02x" % b for b in h.digest())[:HASH_HEX]


def register(fn, name, args=None, cost=None, sample=None, native=None):
    """Register `fn` as kernel `name` (what msw_kernel.kernel's decorator does); returns fn."""
    try:
        path = fn.__globals__["__file__"]
        module = path[path.rfind("/") + 1:path.rfind(".")]
    except (AttributeError, KeyError):
        module = msw_kernel.loading
    _put(name, module, native, fn, args, cost, sample)
    return fn


def stub(name, module, native=None):
    """Register kernel `name` of `module` without importing the module: it loads on the
    first check() or lookup() of one of its kernels. `native`: the native module that
    serves the kernel, as the kernel's own declaration names it."""
    _put(_interned(name), _interned(module), native, None, False, None, None)  # args False


def _interned(s):
    # `s` (read from a manifest) as an interned name, what sys.intern does where a port has
    # it (the boards' do not): getattr() interns the name it looks up, and a str made after
    # that of the same characters is that name. The registry keeps its stubs' names for the
    # whole boot: as names they cost their characters, as str objects 32 bytes each. (A
    # kernel module's own declarations name their kernels with literals, interned already.)
    getattr(_interned, s, None)
    return "".join((s,))


def _put(name, module, native, fn, args, cost, sample):
    # one registry entry; a name is defined by one module only
    kernels = msw_kernel.KERNELS
    old = kernels.get(name)
    if old is not None and old[msw_kernel.MODULE] != module:
        raise ValueError("kernel " + name + " is already defined in "
                         + str(old[msw_kernel.MODULE]))
    fast = None
    if native:
        try:
            fast = getattr(__import__(native), name, None)
        except (ImportError, ValueError):  # ValueError: a .mpy of another arch
            pass
    entry = (fn, args, cost, sample, fast, module)
    if fn is None and fast is None:  # a stub no native function serves: one entry a module,
        entry = _stubs.setdefault(module, entry)  # shared (nothing changes an entry in place)
    kernels[name] = entry


def _import(stem):
    msw_kernel.loading = stem
    try:
        __import__(stem)
    finally:
        msw_kernel.loading = None


def load_installed(folder="."):
    """Import every module named by a kpkg_*.json in `folder` and set the versions of every
    registered kernel module; returns the manifests read."""
    try:
        listing = sorted(os.listdir(folder))
    except OSError:
        listing = []
    read = []
    manifest = {}
    for fname in listing:
        if not (fname.startswith(MANIFEST_PREFIX) and fname.endswith(".json")):
            continue
        try:
            with open(folder + "/" + fname) as f:
                doc = json.load(f)
            modules = doc["modules"]
            lazy = doc.get("kernels", {})
            for stem in sorted(modules):
                manifest[stem] = modules[stem]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            msw_kernel.errors.append((fname, "bad manifest: " + str(e)))
            continue
        read.append(fname)
        for stem in sorted(modules):
            if stem in sys.modules:
                continue
            if stem in lazy:  # its kernels as stubs: the module loads on its first task
                try:
                    for name in sorted(lazy[stem]):
                        stub(name, stem, lazy[stem][name])
                except Exception as e:  # a name another module took, as an import says
                    msw_kernel.errors.append((stem, type(e).__name__ + ": " + str(e)))
                continue
            try:
                _import(stem)
            except Exception as e:  # a user's module: keep the node up without it
                msw_kernel.errors.append((stem, type(e).__name__ + ": " + str(e)))
    stems = set(manifest)
    for name in msw_kernel.KERNELS:
        stems.add(msw_kernel.KERNELS[name][msw_kernel.MODULE])
    for stem in stems:
        if stem is None:
            continue
        try:
            msw_kernel.versions[stem] = file_hash(folder + "/" + stem + ".py")
        except OSError:
            if stem in manifest:
                msw_kernel.versions[stem] = manifest[stem]
    return read


# ---- what HELLO says of the kernels (worker_up.hello imports this module for it)


def names(module=None):
    """Every kernel name, sorted; only those of `module` ("kernels": the built-in ones)."""
    kernels = msw_kernel.KERNELS
    return sorted(n for n in kernels if module is None or kernels[n][msw_kernel.MODULE] == module)


def native_names():
    """The kernels a native module serves, sorted (none while msw_kernel.native_on is off)."""
    kernels = msw_kernel.KERNELS
    return sorted(n for n in kernels
                  if msw_kernel.native_on and kernels[n][msw_kernel.NATIVE] is not None)


def hashes():
    """Kernel name -> version hash, for every kernel whose version is known."""
    out = {}
    kernels = msw_kernel.KERNELS
    for n in kernels:
        h = msw_kernel.versions.get(kernels[n][msw_kernel.MODULE])
        if h:
            out[n] = h
    return out


def native_arch():
    """The architecture of the loaded native module, or None."""
    if not native_names():
        return None
    arch = getattr(sys.modules.get("msw_native"), "ARCH", None)
    if arch:
        return arch
    mpy = getattr(sys.implementation, "_mpy", None)
    if mpy is None:
        return None
    index = (mpy >> 10) & 0x0F
    return MPY_ARCHES[index] if index < len(MPY_ARCHES) else None


def hello_fields():
    """HELLO's fields about kernels, by catalog field name: kernels, kernel_hashes and,
    with a native module, native_arch and native_kernels."""
    fields = {"kernels": names(), "kernel_hashes": hashes()}
    arch = native_arch()
    if arch:
        fields["native_arch"] = arch
        fields["native_kernels"] = native_names()
    return fields
