"""Build a user's C kernel into a native module (.mpy) for a board's architecture, with the
project's own linker and the same MicroPython SDK headers and rules as msw_native.

  microswarm native build examples/kernels/fast_hist.c --arch x64
  microswarm native build examples/kernels/fast_hist.c --arch armv7emsp --arch rv32imc

The module is named after the file (fast_hist.c -> fast_hist.mpy) and lands in the
package's build/<arch>/ folder, where `microswarm deploy --kernels` and virtual boards
look for it. The Python kernel that names it (`native="fast_hist"`) stays the reference
and the fallback on boards without a build for their arch. Arches: x64 (the VM), armv6m
(RP2040), armv7emsp (RP2350), rv32imc; the cross compilers are installed from Debian when
missing (as root), else the arch is reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType

ARCHES = ("x64", "armv6m", "armv7emsp", "rv32imc")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build_cmd = sub.add_parser("build", help="compile and link a C kernel into a .mpy")
    build_cmd.add_argument("source", type=Path, help="the C file (its name names the module)")
    build_cmd.add_argument("--arch", action="append", choices=ARCHES, required=True,
                           help="target architecture (repeat for several)")
    build_cmd.add_argument("--force", action="store_true", help="rebuild even if up to date")


def toolchain() -> ModuleType:
    """tools/build_native.py of this checkout (the linker is not part of the wheel)."""
    from microswarm import paths

    tools = paths.firmware_dir().parent / "tools"
    if not (tools / "build_native.py").is_file():
        raise SystemExit("microswarm native build needs a source checkout (tools/ is not here)")
    if str(tools) not in sys.path:
        sys.path.insert(0, str(tools))
    import build_native

    return build_native


def build(source: str | Path, arch: str, force: bool = False) -> Path:
    """Build one C kernel for `arch`; the path of the .mpy (PACKAGE/build/ARCH/NAME.mpy)."""
    from microswarm.kernelpkg import KernelPackageError, firmware_modules

    source = Path(source).resolve()
    if not source.is_file() or source.suffix != ".c":
        raise KernelPackageError(f"{source}: not a C source file")
    module = source.stem
    if not module.isidentifier() or module in firmware_modules():
        raise KernelPackageError(f"{source.name}: {module!r} cannot name a native module")
    tools = toolchain()
    return tools.build_module(module, [source], source.parent / "build", arch,
                              include=[source.parent], force=force)


def run(args: argparse.Namespace) -> int:
    from microswarm.kernelpkg import KernelPackageError

    tools = toolchain()
    failed = False
    for arch in args.arch:
        try:
            print(build(args.source, arch, force=args.force))
        except tools.ToolchainMissing as exc:
            print(f"native build: skipping {arch}: {exc}", file=sys.stderr)
            failed = True
        except (tools.sdk.BuildError, KernelPackageError) as exc:
            print(f"native build failed ({arch}): {exc}", file=sys.stderr)
            failed = True
    return 1 if failed else 0
