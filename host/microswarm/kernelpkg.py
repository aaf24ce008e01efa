"""Kernel packages: a user's folder of MicroPython-compatible modules that register kernels.

    mykernels/
        histogram.py        # @kernel("histogram", args=[...]) from msw_kernel
        fast_hist.c         # optional native version (`microswarm native build`)
        build/x64/fast_hist.mpy

Every top-level `*.py` of the folder is a kernel module. The same files are imported by
boards and virtual boards (copied beside the firmware, with a manifest
`kpkg_<package>.json` that lists the modules and their source hashes, which
firmware/msw_boot.py reads at boot), and by this process (`load`) for in-process and local
nodes and for the submitter, which takes a kernel's version from the package it loaded.

    python -m microswarm.kernelpkg mykernels/     # write mykernels/package.json for mip

writes the folder's `package.json` (its modules and manifest, by relative URL) and the
manifest itself, so `mpremote mip install --target / mykernels/package.json` installs the
package on a board that has the firmware. mip copies .py sources; native modules go on a
board with `microswarm deploy --kernels`.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from microswarm import paths
from microswarm.firmware import msw_boot, msw_kernel

MANIFEST_PREFIX = msw_boot.MANIFEST_PREFIX
KINDS = ("uint", "int", "float", "bool", "tstr", "bstr", "array", "tstr[]", "map", "any",
         "tarray")  # the catalog's field kinds and typed arrays (see msw_kernel)
TYPECODES = "BHIQbhiqfd"
FIRMWARE_PACKAGE = "firmware"
FIRMWARE_KERNEL_MODULES = ("kernels", "kernels_small")  # the built-in kernels' files
# The firmware's files a kernel package registers and runs on without a worker (a VM's flash
# with only the registry): the registry's two halves, and the codec the registry's checks
# name an array's typecode and render their texts with.
REGISTRY_FILES = ("msw_kernel.py", "msw_boot.py", "cbor.py", "msgdefs.py", "msw_texts.py")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# CPython 3.11 counts the AST constructor's depth in state shared by every thread: two
# ast.parse() at once (virtual boards that build their bundles on parallel threads) can
# fail with "SystemError: AST constructor recursion depth mismatch". One parse at a time.
_PARSING = threading.Lock()


class KernelPackageError(ValueError):
    """A kernel package folder that cannot be used as it is; the message says why."""


def source_hash(data: bytes) -> str:
    """A kernel module's version: the first hex digits of the SHA-256 of its source."""
    import hashlib

    return hashlib.sha256(data).hexdigest()[: msw_boot.HASH_HEX]


@dataclass(frozen=True)
class KernelPackage:
    name: str
    root: Path
    modules: dict[str, Path]  # module name -> .py file
    natives: dict[str, Path]  # native module name -> .c source

    @property
    def manifest_name(self) -> str:
        return f"{MANIFEST_PREFIX}{self.name}.json"

    def hashes(self) -> dict[str, str]:
        return {stem: source_hash(path.read_bytes()) for stem, path in self.modules.items()}

    def hashes_digest(self) -> str:
        """One version for the whole package (mip's "version" field)."""
        return source_hash(json.dumps(self.hashes(), sort_keys=True).encode())

    def manifest(self) -> bytes:
        doc = {"package": self.name, "modules": self.hashes()}
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    def native_module(self, stem: str, arch: str | None) -> Path | None:
        """The built native module `stem` for `arch`, if `microswarm native build` made it."""
        if not arch:
            return None
        path = self.root / "build" / arch / f"{stem}.mpy"
        return path if path.is_file() else None

    def files(self, arch: str | None) -> dict[str, bytes]:
        """What goes on a board's flash for this package: the module sources (deploy
        compiles them), the manifest, and each native module built for `arch`."""
        out = {f"{stem}.py": path.read_bytes() for stem, path in self.modules.items()}
        out[self.manifest_name] = self.manifest()
        for stem in self.natives:
            built = self.native_module(stem, arch)
            if built is not None:
                out[f"{stem}.mpy"] = built.read_bytes()
        return out


def firmware_modules() -> set[str]:
    """Module names the firmware itself uses on a board (a package must not shadow them)."""
    names = {p.stem for p in paths.firmware_dir().glob("*.py")}
    names |= {"msw_native", "boot", "main", "config", "board", "kernels"}
    return names


def find(folder: str | Path) -> KernelPackage:
    """The kernel package in `folder`, checked: it exists, holds modules with names that
    are valid on a board, and shadows none of the firmware's modules."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise KernelPackageError(f"kernel package {folder}: no such folder")
    name = root.name
    if not _NAME.match(name):
        raise KernelPackageError(f"kernel package {folder}: the folder name {name!r} must be "
                                 "a Python identifier (it names the package's manifest)")
    modules = {p.stem: p for p in sorted(root.glob("*.py")) if p.is_file()}
    natives = {p.stem: p for p in sorted(root.glob("*.c")) if p.is_file()}
    if not modules:
        raise KernelPackageError(f"kernel package {folder}: no .py modules in it")
    clash = sorted((set(modules) | set(natives)) & firmware_modules())
    if clash:
        raise KernelPackageError(f"kernel package {folder}: {', '.join(clash)} would shadow "
                                 "the firmware's own modules; rename them")
    for stem in [*modules, *natives]:
        if not _NAME.match(stem):
            raise KernelPackageError(f"kernel package {folder}: {stem!r} is not a module name")
    both = sorted(set(modules) & set(natives))
    if both:
        raise KernelPackageError(f"kernel package {folder}: {', '.join(both)} is both a .py "
                                 "and a .c module; give the native one its own name")
    return KernelPackage(name, root, modules, natives)


def find_all(folders: Iterable[str | Path]) -> list[KernelPackage]:
    packages = [find(f) for f in folders]
    seen: dict[str, Path] = {}
    for pkg in packages:
        for stem in [*pkg.modules, *pkg.natives, f"kpkg:{pkg.name}"]:
            if stem in seen and seen[stem] != pkg.root:
                raise KernelPackageError(f"{stem} is in both {seen[stem]} and {pkg.root}")
            seen[stem] = pkg.root
    return packages


def kind_ok(kind: object) -> bool:
    """A kind the node checks: one of KINDS, or "tarray:" and typed-array typecodes."""
    if kind in KINDS:
        return True
    return (isinstance(kind, str) and kind.startswith("tarray:") and len(kind) > 7
            and all(code in TYPECODES for code in kind[7:]))


def kinds_problem(args: object) -> str:
    """What is wrong with a kernel's declared `args` ((name, kind), ...), or ""; the node
    itself does not check declarations (its registry stays small), so packages are
    checked here when they load on the host (and so before every deploy's own load)."""
    if args is None:
        return ""
    try:
        pairs = [(name, kind) for name, kind in args]
    except (TypeError, ValueError):
        return "args must be a sequence of (name, kind) pairs"
    for name, kind in pairs:
        if not isinstance(name, str) or not name:
            return f"argument name {name!r} is not a name"
        if not kind_ok(kind):
            return (f"argument {name}: unknown kind {kind!r} (known: {', '.join(KINDS)}, "
                    f"tarray:CODES with CODES from {TYPECODES})")
    return ""


def version(kernel: str) -> str | None:
    """The version (content hash) of `kernel` as this process has it, or None."""
    entry = msw_kernel.KERNELS.get(kernel)
    return None if entry is None else msw_kernel.versions.get(entry[msw_kernel.MODULE])


def declared_kernels(source: bytes) -> dict[str, str | None]:
    """Kernel name -> the native module its declaration names (None: pure Python), for
    every `@kernel("name", ..., native=...)` of a module's source. `native=` must be a
    string or a module-level name bound to one."""
    import ast

    with _PARSING:
        tree = ast.parse(source)
    strings = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
               for t in node.targets if isinstance(t, ast.Name)}
    found: dict[str, str | None] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name)
                    and deco.func.id == "kernel" and deco.args
                    and isinstance(deco.args[0], ast.Constant)):
                continue
            native = None
            for kw in deco.keywords:
                if kw.arg == "native":
                    value = kw.value
                    native = (value.value if isinstance(value, ast.Constant)
                              else strings[value.id])
            found[deco.args[0].value] = native
    return found


def firmware_manifest() -> tuple[str, bytes]:
    """The built-in kernels' manifest: their version on a board whose kernels are .mpy,
    and the kernels of kernels.py and kernels_small.py, which a board registers without
    importing the modules (msw_boot.py): each loads on the first task that names one of
    its kernels."""
    doc: dict = {"package": FIRMWARE_PACKAGE, "modules": {}, "kernels": {}}
    for stem in FIRMWARE_KERNEL_MODULES:
        source = (paths.firmware_dir() / f"{stem}.py").read_bytes()
        doc["modules"][stem] = source_hash(source)
        doc["kernels"][stem] = declared_kernels(source)
    return (f"{MANIFEST_PREFIX}{FIRMWARE_PACKAGE}.json",
            (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def layout_files(folders: Iterable[str | Path], arch: str | None) -> dict[str, bytes]:
    """Every file the given packages put on a board of native arch `arch`."""
    files: dict[str, bytes] = {}
    for pkg in find_all(folders):
        files.update(pkg.files(arch))
    return files


def load(folders: Iterable[str | Path]) -> list[KernelPackage]:
    """Import kernel packages into this process, as a board does at boot: their kernels
    join the registry (msw_kernel) next to the built-in ones. Loading a package again is
    a no-op; a module name already taken by another file is an error."""
    packages = find_all(folders)
    for pkg in packages:
        root = str(pkg.root)
        for stem, path in pkg.modules.items():
            have = sys.modules.get(stem)
            if have is not None:
                where = getattr(have, "__file__", None)
                if where is None or Path(where).resolve() != path:
                    raise KernelPackageError(f"module {stem} of {pkg.root} is already "
                                             f"imported from {where}")
                continue
            if root not in sys.path:
                sys.path.append(root)
            msw_kernel.versions[stem] = source_hash(path.read_bytes())
            msw_kernel.loading = stem
            try:
                __import__(stem)
            except Exception as exc:
                raise KernelPackageError(f"{path}: {type(exc).__name__}: {exc}") from exc
            finally:
                msw_kernel.loading = None
            for name, entry in msw_kernel.KERNELS.items():
                if entry[msw_kernel.MODULE] == stem:
                    problem = kinds_problem(entry[msw_kernel.ARGS])
                    if problem:
                        raise KernelPackageError(f"{path}: kernel {name}: {problem}")
    return packages


def write_mip_package(folder: str | Path) -> list[Path]:
    """Write FOLDER/package.json and the manifest it lists; the paths written."""
    pkg = find(folder)
    manifest = pkg.root / pkg.manifest_name
    manifest.write_bytes(pkg.manifest())
    names = [f"{stem}.py" for stem in pkg.modules] + [pkg.manifest_name]
    urls = ",\n".join(f"  {json.dumps([name, name])}" for name in names)
    text = f'{{\n "urls": [\n{urls}\n ],\n "deps": [],\n "version": "{pkg.hashes_digest()}"\n}}\n'
    target = pkg.root / "package.json"
    target.write_text(text)
    return [target, manifest]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="write a kernel package's package.json "
                                     "(mpremote mip) and manifest")
    parser.add_argument("folder", help="the kernel package folder")
    args = parser.parse_args(argv)
    try:
        written = write_mip_package(args.folder)
    except KernelPackageError as exc:
        print(exc, file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
