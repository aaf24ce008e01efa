"""Build the native kernel module msw_native for each MicroPython arch.

Usage: python tools/build_native.py --all | --arch x64 [--arch armv6m ...] [--force]

Output: firmware/native/build/<arch>/msw_native.mpy. The MicroPython headers come from the
pinned sdist (downloaded once into .cache/); the ARM and RISC-V cross compilers are installed
from Debian when missing and this runs as root, and their targets are skipped with a message
when they cannot be had. Work is skipped while the outputs are newer than every input.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from natmod import sdk  # noqa: E402
from natmod.elflink import LinkError, link_elf  # noqa: E402
from natmod.mpyfile import write_mpy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "firmware" / "native"
BUILD = NATIVE / "build"
CACHE = ROOT / ".cache"
MODULE = "msw_native"
SOURCES = ["msw_native.c", "kernels.c", "frame.c"]
HEADERS = ["kernels.h", "frame.h"]


@dataclass(frozen=True)
class Target:
    arch: str
    prefix: str  # toolchain prefix ("" for the host gcc)
    flags: tuple[str, ...]
    float_impl: str
    debian_packages: tuple[str, ...]
    ld_flags: tuple[str, ...] = ()


TARGETS: dict[str, Target] = {
    "x64": Target("x64", "", ("-fno-stack-protector",), "DOUBLE", ()),
    "armv6m": Target(
        "armv6m", "arm-none-eabi-", ("-mthumb", "-mcpu=cortex-m0"), "FLOAT",
        ("gcc-arm-none-eabi",),
    ),
    "armv7emsp": Target(
        "armv7emsp",
        "arm-none-eabi-",
        ("-mthumb", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
        "FLOAT",
        ("gcc-arm-none-eabi",),
    ),
    "rv32imc": Target(
        "rv32imc",
        "riscv64-unknown-elf-",
        ("-march=rv32imac", "-mabi=ilp32", "-mno-relax"),
        "FLOAT",
        ("gcc-riscv64-unknown-elf", "picolibc-riscv64-unknown-elf"),
        ("-m", "elf32lriscv"),
    ),
}
COMMON_FLAGS = (
    "-std=c99", "-Os", "-Wall", "-Werror", "-DNDEBUG", "-DNO_QSTR",
    "-DMICROPY_ENABLE_DYNRUNTIME", "-fpic", "-fno-common", "-U_FORTIFY_SOURCE",
    "-ffunction-sections", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
)


class ToolchainMissing(RuntimeError):
    """The compiler for an arch is not installed and could not be installed."""


def log(message: str) -> None:
    print(f"build_native: {message}", file=sys.stderr)


def run(cmd: list[str], timeout: float = 300) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise sdk.BuildError(f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")


def ensure_toolchain(target: Target) -> None:
    ensure_command(target.prefix + "gcc", target.debian_packages)


def ensure_command(command: str, packages: tuple[str, ...]) -> None:
    """`command` is on PATH, installed from Debian's `packages` when missing and root."""
    if shutil.which(command):
        return
    names = " ".join(packages)
    if not names:
        raise ToolchainMissing(f"{command} is not installed")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ToolchainMissing(f"{command} is missing; install it with: apt-get install -y {names}")
    log(f"installing {names} from Debian (once; about a minute)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600, env=env)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0 or not shutil.which(command):
        raise ToolchainMissing(f"could not install {names}: {proc.stderr.strip()[-400:]}")


def arch_flags(target: Target) -> list[str]:
    """The target's flags, plus picolibc's specs for the bare-metal RISC-V compiler."""
    flags = list(target.flags)
    if target.arch == "rv32imc":
        specs = subprocess.run(
            [target.prefix + "gcc", "--print-file-name=picolibc.specs"],
            capture_output=True, text=True, timeout=60,
        ).stdout.strip()
        if specs and specs != "picolibc.specs":
            flags.append(f"-specs={specs}")
    return flags


def newest(paths: list[Path]) -> float:
    return max(p.stat().st_mtime for p in paths)


def stale(output: Path, inputs: list[Path]) -> bool:
    return not output.exists() or output.stat().st_mtime < newest(inputs)


def prepare(force: bool = False, *, module: str = MODULE, sources: list[Path] | None = None,
            build_dir: Path = BUILD) -> tuple[Path, Path, list[str], dict[str, int]]:
    """sdist root, config header, module qstrs and mp_fun_table indices, shared by arches."""
    sources = [NATIVE / s for s in SOURCES] if sources is None else sources
    sdk_root = sdk.fetch_sdist(CACHE)
    build_dir.mkdir(parents=True, exist_ok=True)
    static = sdk.static_qstrs(sdk_root)
    module_qstrs = sdk.module_qstrs(sdk.qstrs_used(sources), static)
    config = build_dir / f"{module}.config.h"
    text = sdk.config_header(static, module_qstrs)
    if force or not config.exists() or config.read_text() != text:
        config.write_text(text)
    (build_dir / f"{module}.qstrs").write_text("\n".join(module_qstrs) + "\n")
    fun_table = sdk.fun_table_indices(sdk_root, config, build_dir)
    return sdk_root, config, module_qstrs, fun_table


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock on the file `path` (created with its folder) while the block runs:
    one build of a thing at a time across processes (parallel test workers, a build started
    ahead of the tests, a tool run beside them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_module(module: str, sources: list[Path], build_dir: Path, arch: str, *,
                 headers: list[Path] = (), include: list[Path] = (),
                 defines: list[str] = (), force: bool = False) -> Path:
    """Compile C `sources` into the native module `module` for `arch` with the SDK's
    headers and rules, link it with our linker, and return build_dir/<arch>/<module>.mpy.
    msw_native and users' kernels (`microswarm native build`) are built by this one path."""
    target = TARGETS[arch]
    ensure_toolchain(target)
    build_dir.mkdir(parents=True, exist_ok=True)
    # one build in a build folder at a time (parallel test workers, a tool run beside them):
    # the module's config header and qstrs are shared by its arches
    with locked(build_dir / f".{module}.lock"):
        return _build_module(module, sources, build_dir, target, arch, headers=headers,
                             include=include, defines=defines, force=force)


def _build_module(module: str, sources: list[Path], build_dir: Path, target: Target,
                  arch: str, *, headers: list[Path], include: list[Path], defines: list[str],
                  force: bool) -> Path:
    sdk_root, config, module_qstrs, fun_table = prepare(
        force, module=module, sources=sources, build_dir=build_dir)
    out_dir = build_dir / arch
    out_dir.mkdir(parents=True, exist_ok=True)
    mpy = out_dir / f"{module}.mpy"
    tools = sorted((ROOT / "tools" / "natmod").glob("*.py")) + [Path(__file__).resolve()]
    headers = [*headers, config, sdk_root / "py" / "dynruntime.h"]
    if not force and not stale(mpy, [*sources, *headers, *tools]):
        return mpy
    cc = target.prefix + "gcc"
    cflags = [
        *COMMON_FLAGS, *arch_flags(target),
        f"-DMICROPY_FLOAT_IMPL=MICROPY_FLOAT_IMPL_{target.float_impl}",
        f"-DMP_CONFIGFILE=<{config}>", *defines, "-I", str(sdk_root),
    ]
    for folder in include:
        cflags += ["-I", str(folder)]
    objects = []
    for source in sources:
        obj = out_dir / (source.stem + ".o")
        if force or stale(obj, [source, *headers, Path(__file__).resolve()]):
            run([cc, *cflags, "-c", str(source), "-o", str(obj)])
        objects.append(str(obj))
    merged = out_dir / f"{module}.linked.o"
    ld_cmd = [target.prefix + "ld", *target.ld_flags, "-r", "-o", str(merged), *objects]
    if target.prefix:
        libgcc = subprocess.run(
            [cc, *target.flags, "--print-libgcc-file-name"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()
        ld_cmd.append(libgcc)
    run(ld_cmd)
    try:
        linked = link_elf(merged, arch, fun_table, module_qstrs, f"{module}.c")
    except LinkError as exc:
        raise sdk.BuildError(f"linking {module} for {arch}: {exc}") from exc
    mpy.write_bytes(write_mpy(linked))
    log(f"{arch}: {mpy} ({mpy.stat().st_size} bytes)")
    return mpy


def build(arch: str, force: bool = False) -> Path:
    """Build firmware/native/build/<arch>/msw_native.mpy and return its path."""
    return build_module(MODULE, [NATIVE / s for s in SOURCES], BUILD, arch,
                        headers=[NATIVE / h for h in HEADERS], include=[NATIVE],
                        defines=[f'-DMSW_ARCH="{arch}"'], force=force)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every arch this machine can build")
    parser.add_argument("--arch", action="append", choices=sorted(TARGETS), default=[])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    arches = list(TARGETS) if args.all else args.arch
    if not arches:
        parser.error("name an --arch or pass --all")
    failed = False
    for arch in arches:
        try:
            path = build(arch, force=args.force)
            print(path.relative_to(ROOT))
        except ToolchainMissing as exc:
            log(f"skipping {arch}: {exc}")
        except sdk.BuildError as exc:
            log(f"{arch} failed: {exc}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
