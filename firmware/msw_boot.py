"""Boot-time half of the kernel registry: import the kernel packages on the flash and
settle every kernel module's version. main.py runs it once and drops it, so none of this
stays in a board's heap.

A package on the flash is its modules plus a manifest `kpkg_<package>.json`:
{"package": name, "modules": {module: source hash}} (the deploy writes it; the firmware's
own, kpkg_firmware.json, names kernels.py). Every module a manifest names is imported, in
order of manifest then module name; one that fails is left out and noted in
msw_kernel.errors, and the node still boots. A module's version is the hash of its .py
file when the flash holds the source (the truth, even if a manifest is stale), else the
manifest's (a board holding .mpy files).

A manifest may also list a module's kernels, {"kernels": {module: {kernel: native module
or null}}} (the firmware's does, for kernels.py): such a module is not imported here; its
kernels are registered as stubs (msw_kernel.stub) and it loads on the first task that
names one of them, so its code is not in the heap while the node joins and idles.
"""

import hashlib
import json
import os
import sys

import msw_kernel

MANIFEST_PREFIX = "kpkg_"
HASH_HEX = 12  # hex digits of SHA-256 that name a version


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
                        msw_kernel.stub(name, stem, lazy[stem][name])
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
