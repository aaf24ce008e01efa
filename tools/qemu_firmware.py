"""MicroPython's own `ports/qemu` firmware as a tool of the project: a real 32-bit
MicroPython (Thumb-2 code, 32-bit objects, a UART REPL) for figures and checks that the
64-bit unix-port VM cannot give.

Usage: python tools/qemu_firmware.py [--board MPS2_AN500|MPS2_AN385] [--heap N]
       [--romfs] [--esp32] [--run [--romfs-image IMG]]

Source: `$MICROPYTHON_SRC` (a MicroPython tree with py/ and ports/qemu), else the pinned
tarball `micropython-1c3c2011.tar.gz` (upstream commit 1c3c2011..., a subset with its
LICENSE) from `$MICROSWARM_MICROPYTHON_TARBALL` or `../shared/vendor/` beside the
repository; no package registry carries it. Where neither exists, `QemuUnavailable` says so
and the tests and benchmarks that need the firmware skip with that message.

Build: `make -C ports/qemu BOARD=... FROZEN_MANIFEST=` (empty manifest: micropython-lib is
not in the tree) with `MICROPY_HEAP_SIZE` when a heap is asked for; cached under
`.cache/qemu/` per source, board, heap and ROMFS partition. The ARM compiler
(`gcc-arm-none-eabi`) and Debian's `qemu-system-arm` are installed with apt when missing
and this runs as root, as tools/build_native.py does for its compilers.

Run: `Qemu(board)` starts `qemu-system-arm -machine mps2-an500 -serial pty ...` and gives the
pty of the emulated UART, which mpremote (and the master's serial link) open like a board's.

ROMFS (`--romfs`, `firmware(..., romfs=True)`): the build names a partition
(MICROPY_HW_ROMFS_PART0_START/SIZE, ROMFS_PARTITIONS below) that `vfs.rom_ioctl` hands out as
a read-only memoryview, and `Qemu(..., romfs_image=IMG)` loads an image there with `-device
loader,file=IMG,addr=START,force-raw=on`. Every build's `vfs.rom_ioctl` is the project's
tools/qemu_vfs_rom_ioctl.c in place of the port's (which only reports the partition): the
partition is also written as NOR flash is, through the ioctl's erase and write commands
(`mpremote romfs deploy`, `microswarm deploy --romfs`): 4 KB erase blocks, writes that
only clear bits, in 256-byte units. The port is built from a tree of links to the source
with that one file replaced (the source is not touched), and the build's name carries the
file's digest. The heap and everything else are the port's own, so the figures measured
on the builds do not move. The ranges: QEMU 7.2's `info mtree` maps 16 MB
of RAM ("mps.ram") at 0x60000000 on mps2-an500 and at 0x21000000 on mps2-an385, and the
port's linker script (ports/qemu/mcu/arm/mps2.ld) places the whole firmware, stack and heap
in 0x00000000-0x003fffff; the last 4 MB of the former and the first 4 MB of the latter are
what the port's own board files (boards/MPS2_AN*/mpconfigboard.mk) name too, so the
default build has the same partition (empty unless an image is loaded) and `--romfs` uses
that build; for a source whose board file names none (or another), `--romfs` names it on
the make line and in the cache key. At every (soft) reset the firmware mounts a valid image
at /rom and puts /rom and /rom/lib on sys.path (mp_init in py/runtime.c calls
mp_vfs_mount_romfs_protected, extmod/vfs.c), as a ROMFS board's firmware does.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tty
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_native import TARGETS, ToolchainMissing, ensure_command, ensure_toolchain, locked  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "qemu"
TARBALL = "micropython-1c3c2011.tar.gz"
VENDOR = ROOT.parent / "shared" / "vendor"
BUILD_TIMEOUT_S = 1800
# (start, size) of the ROMFS partition per board: RAM QEMU maps that the linker script
# leaves alone (see the module's docstring)
ROMFS_PARTITIONS = {
    "MPS2_AN500": (0x60C00000, 0x00400000),
    "MPS2_AN385": (0x21000000, 0x00400000),
}


# The ESP32-like build (`esp32=True`, `--esp32`): its frozen manifest (asyncio's package
# from the tree being built) and the configuration file named by MP_CONFIGFILE (the port's
# own, with the `_asyncio` C module at the ROM level's default). The RP2350's stock
# firmware carries asyncio the same way (ports/rp2: the same manifest line, the same ROM
# level), so this build stands for both; `bench footprint` measures every board on it.
ESP32_DIR = Path(__file__).resolve().parent / "qemu_esp32"
ESP32_FILES = ("manifest.py", "mpconfig_esp32.h")

# Every build's vfs.rom_ioctl (the port's own only reports the partition): a ROM partition
# written as NOR flash is, through the ioctl's erase and write commands (WRITE_PREPARE,
# WRITE, WRITE_COMPLETE), which `mpremote romfs deploy` and `microswarm deploy --romfs` use.
ROM_IOCTL = Path(__file__).resolve().parent / "qemu_vfs_rom_ioctl.c"


@dataclass(frozen=True)
class QemuBoard:
    name: str  # BOARD= of ports/qemu
    machine: str  # qemu-system-arm -machine
    mpy_arch: str  # what mpy-cross -march= targets on it (its _mpy arch)
    cpu: str


BOARDS = {
    "MPS2_AN500": QemuBoard("MPS2_AN500", "mps2-an500", "armv7emdp", "Cortex-M7"),
    "MPS2_AN385": QemuBoard("MPS2_AN385", "mps2-an385", "armv7m", "Cortex-M3"),
}


class QemuUnavailable(RuntimeError):
    """The firmware cannot be built or run here; the message says what is missing."""


def log(message: str) -> None:
    print(f"qemu_firmware: {message}", file=sys.stderr)


def tarball() -> Path | None:
    named = os.environ.get("MICROSWARM_MICROPYTHON_TARBALL")
    path = Path(named) if named else VENDOR / TARBALL
    return path if path.is_file() else None


def source_tree() -> Path:
    """The MicroPython tree to build from (extracted once from the tarball)."""
    named = os.environ.get("MICROPYTHON_SRC")
    if named:
        tree = Path(named).resolve()
        if not (tree / "ports" / "qemu" / "Makefile").is_file():
            raise QemuUnavailable(f"MICROPYTHON_SRC={named} holds no ports/qemu/Makefile")
        return tree
    archive = tarball()
    if archive is None:
        raise QemuUnavailable(
            f"no MicroPython source: set MICROPYTHON_SRC to a MicroPython tree, or put {TARBALL} "
            f"in ../shared/vendor/ beside the repository (or name it in "
            f"MICROSWARM_MICROPYTHON_TARBALL)")
    target = CACHE / ("src-" + archive.name.removesuffix(".tar.gz"))
    tree = target / "micropython"
    if not (tree / "ports" / "qemu" / "Makefile").is_file():
        log(f"extracting {archive.name}")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    return tree


def ensure_tools() -> None:
    try:
        ensure_toolchain(TARGETS["armv7emsp"])
        ensure_command("qemu-system-arm", ("qemu-system-arm",))
    except ToolchainMissing as exc:
        raise QemuUnavailable(str(exc)) from None


def firmware(board: str = "MPS2_AN500", heap: int | None = None, romfs: bool = False,
             esp32: bool = False) -> Path:
    """The firmware.elf of `board` (built once, then cached); `heap` sets its GC heap,
    `romfs` gives it the ROMFS partition of ROMFS_PARTITIONS, `esp32` carries asyncio as
    the ESP32 and RP2350 firmware do (ESP32_FILES: frozen package, `_asyncio` in C)."""
    if board not in BOARDS:
        raise QemuUnavailable(f"unknown QEMU board {board!r}; known: {', '.join(BOARDS)}")
    with locked(CACHE / ".lock"):  # one extraction at a time
        tree = source_tree()
    key = tree.parent.name if tree.is_relative_to(CACHE) else "src-" + _slug(str(tree))
    name = board + (f"-heap{heap}" if heap else "")
    if romfs:
        start, size = ROMFS_PARTITIONS[board]
        # a board file that names this partition already builds it (no second build)
        romfs = _board_partition(tree, board) != (start, size)
    if romfs:
        name += f"-romfs{start:x}+{size:x}"
    if esp32:
        name += "-esp32-" + _esp32_digest()
    name += "-rom-" + _digest(ROM_IOCTL)
    build = CACHE / "build" / key / name
    elf = build / "firmware.elf"
    # one build of each firmware at a time: parallel test workers, and a build started
    # ahead of the tests (tests/conftest.py), ask for the same one; the second waits here
    # and finds the first one's firmware.elf
    with locked(build.parent / f"{name}.lock"):
        if elf.is_file():
            return elf
        if build.exists():
            # a build that did not finish (stopped, killed, or it failed): make would go on
            # from its half-written generated headers and fail the same way at every try
            shutil.rmtree(build)
        ensure_tools()
        port = _port_with_our_rom_ioctl(tree, build.parent / ("tree-" + name))
        command = ["make", "-C", str(port), f"BOARD={board}",
                   f"BUILD={build}", f"-j{os.cpu_count() or 1}"]
        if esp32:
            manifest, config = (ESP32_DIR / f for f in ESP32_FILES)
            # the shell that runs make's recipes keeps the double quotes inside the single;
            # mpy-cross built on its own (the port's make would build it with this BUILD
            # and CFLAGS_EXTRA); the manifest requires nothing from micropython-lib, which
            # the tree does not hold, so an empty folder stands for it
            command += [f"FROZEN_MANIFEST={manifest}",
                        f"CFLAGS_EXTRA='-DMP_CONFIGFILE=\"{config}\"'",
                        f"MICROPY_MPYCROSS={_mpy_cross(tree, build.parent)}",
                        f"MPY_LIB_DIR={_no_micropython_lib(build.parent)}"]
        else:
            command.append("FROZEN_MANIFEST=")
        if heap:
            command.append(f"MICROPY_HEAP_SIZE={int(heap)}")
        if romfs:
            command += [f"MICROPY_HW_ROMFS_PART0_START={start:#x}",
                        f"MICROPY_HW_ROMFS_PART0_SIZE={size:#x}"]
        log(f"building {name} (once, about 30 s)")
        proc = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0 or not elf.is_file():
            raise QemuUnavailable(f"the {board} firmware did not build:\n{proc.stderr[-2000:]}")
        return elf


def _mpy_cross(tree: Path, where: Path) -> Path:
    """The tree's mpy-cross, built once under `where` (it compiles the frozen modules)."""
    out = where / "mpy-cross"
    program = out / "mpy-cross"
    with locked(where / "mpy-cross.lock"):
        if not program.is_file():
            log("building mpy-cross (once)")
            env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
            proc = subprocess.run(
                ["make", "-C", str(tree / "mpy-cross"), f"BUILD={out}",
                 f"-j{os.cpu_count() or 1}"],
                capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env)
            if proc.returncode != 0 or not program.is_file():
                raise QemuUnavailable(f"mpy-cross did not build:\n{proc.stderr[-2000:]}")
    return program


def _no_micropython_lib(where: Path) -> Path:
    """An empty micropython-lib (its README.md is what the port's make checks for)."""
    folder = where / "no-micropython-lib"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text("micropython-lib is not in this tree\n")
    return folder


def _esp32_digest() -> str:
    """Names the ESP32-like build by what it is made of (ESP32_FILES' contents)."""
    return _digest(*(ESP32_DIR / name for name in ESP32_FILES))


def _digest(*files: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def _port_with_our_rom_ioctl(tree: Path, where: Path) -> Path:
    """ports/qemu of `tree` with ROM_IOCTL as its vfs_rom_ioctl.c: a tree of symbolic links
    to the source (left untouched) under `where`, the port's files linked one by one but
    that one, which is a copy of ours. Returns the port's folder to run make in."""
    port = where / "ports" / "qemu"
    if where.exists():
        shutil.rmtree(where)
    port.mkdir(parents=True)
    for entry in tree.iterdir():
        if entry.name != "ports":
            (where / entry.name).symlink_to(entry)
    for entry in (tree / "ports" / "qemu").iterdir():
        if entry.name != "vfs_rom_ioctl.c":
            (port / entry.name).symlink_to(entry)
    shutil.copyfile(ROM_IOCTL, port / "vfs_rom_ioctl.c")
    return port


def _board_partition(tree: Path, board: str) -> tuple[int, int] | None:
    """The ROMFS partition (start, size) that the source's own board file names, if any."""
    mk = tree / "ports" / "qemu" / "boards" / board / "mpconfigboard.mk"
    text = mk.read_text(errors="replace") if mk.is_file() else ""
    found = dict(re.findall(r"^MICROPY_HW_ROMFS_PART0_(START|SIZE)\s*\??=\s*(\S+)", text, re.M))
    try:
        return int(found["START"], 0), int(found["SIZE"], 0)
    except (KeyError, ValueError):
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[-60:]


class Qemu:
    """One emulated board running the firmware; `port` is its UART's pty.

        with Qemu("MPS2_AN500") as board:
            Mpremote(board.port).exec("print(1)")
    """

    def __init__(self, board: str = "MPS2_AN500", heap: int | None = None,
                 romfs: bool = False, romfs_image: Path | None = None,
                 esp32: bool = False) -> None:
        """`romfs`: the build with a ROMFS partition; `romfs_image`: load it there;
        `esp32`: the build that carries asyncio as the ESP32 firmware does."""
        self.board = BOARDS.get(board)
        if self.board is None:
            raise QemuUnavailable(f"unknown QEMU board {board!r}")
        self.romfs_image = romfs_image
        self.elf = firmware(board, heap, romfs=romfs or romfs_image is not None, esp32=esp32)
        self.process: subprocess.Popen | None = None
        self.port: str | None = None
        self._held: int | None = None
        self._resumed = False

    def start(self, timeout: float = 20.0) -> Qemu:
        qemu = shutil.which("qemu-system-arm")
        if qemu is None:
            raise QemuUnavailable("qemu-system-arm is not installed")
        command = [qemu, "-machine", self.board.machine, "-nographic", "-monitor", "null",
                   "-semihosting", "-serial", "pty", "-kernel", str(self.elf)]
        if self.romfs_image is not None:
            start, size = ROMFS_PARTITIONS[self.board.name]
            if Path(self.romfs_image).stat().st_size > size:
                raise QemuUnavailable(f"ROMFS image {self.romfs_image} is larger than the "
                                      f"{size}-byte partition")
            command += ["-device", f"loader,file={self.romfs_image},addr={start:#x},"
                                   "force-raw=on"]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            found = re.search(r"char device redirected to (/dev/pts/\d+)", line)
            if found:
                self.port = found.group(1)
                self._hold_port()
                return self
        self.stop()
        raise QemuUnavailable(f"qemu-system-arm gave no serial pty for {self.board.name}")

    def _hold_port(self) -> None:
        """Keep the UART's pty open (raw) while the board runs. QEMU's pty backend takes a
        pty that nobody holds for disconnected, and after a program opens it (each mpremote
        command) reads nothing from it until its next check, up to a second later: every
        command waited about 1 s before the board heard it (6 `exec`s in a row: 1.0 s each,
        0.09 s with the pty held). What the board writes meanwhile waits in the pty for the
        next reader instead of being dropped."""
        assert self.port is not None
        self._held = os.open(self.port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self._held)

    def stop(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            os.close(held)
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    # ---- driving it with mpremote ---------------------------------------------------------
    # The first mpremote command soft-resets the board (mpremote's default); every later one
    # starts with `resume`, so the flash mounted in RAM and the imported modules stay.

    def mpremote(self, *commands: list[str], timeout: float = 120.0) -> str:
        from microswarm.deploy.mpremote import Mpremote

        assert self.port is not None, "start() the board first"
        chain = [["resume"], *commands] if self._resumed else list(commands)
        self._resumed = True
        return Mpremote(self.port, timeout=timeout).run_chain(chain, timeout=timeout)

    def exec(self, code: str, timeout: float = 120.0) -> str:
        return self.mpremote(["exec", code], timeout=timeout)

    def install(self, files: dict[str, bytes], timeout: float = 300.0) -> None:
        """Mount a flash file system in the board's RAM outside its heap (qemu_flash.py)
        and copy `files` (name -> bytes; "pkg/mod.mpy" makes the folder) onto it."""
        if not self._resumed:
            self.exec("pass")  # mpremote's soft reset happens here, before the mount
        mount = (ROOT / "tools" / "qemu_flash.py").read_text() + "\n_msw_flash = mount()\n"
        self.exec(mount)
        with tempfile.TemporaryDirectory(prefix="msw-qemu-") as tmp:
            commands: list[list[str]] = []
            folders = sorted({name.rpartition("/")[0] for name in files if "/" in name})
            for folder in folders:
                commands.append(["fs", "mkdir", ":" + folder])
            staged = []
            for name, data in sorted(files.items()):
                path = Path(tmp) / name.replace("/", "__")
                path.write_bytes(data)
                staged.append((str(path), name))
            for local, name in staged:
                commands.append(["fs", "cp", local, ":" + name])
            self.mpremote(*commands, timeout=timeout)

    def run_detached(self, code: str) -> None:
        """Start `code` and leave it running (mpremote exec --no-follow): the worker of a
        serial link keeps the UART for its frames."""
        self.mpremote(["exec", "--no-follow", code])

    def __enter__(self) -> Qemu:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            process.kill()
        held = getattr(self, "_held", None)
        if held is not None:
            os.close(held)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", choices=sorted(BOARDS), default="MPS2_AN500")
    parser.add_argument("--heap", type=int, default=None, help="GC heap bytes")
    parser.add_argument("--romfs", action="store_true",
                        help="with a ROMFS partition (ROMFS_PARTITIONS)")
    parser.add_argument("--romfs-image", type=Path, default=None,
                        help="with --run: load this ROMFS image into the partition")
    parser.add_argument("--esp32", action="store_true",
                        help="asyncio frozen and _asyncio in C, as the ESP32 and RP2350 "
                             "firmware have them")
    parser.add_argument("--run", action="store_true",
                        help="start it and print the UART's pty until Ctrl-C")
    args = parser.parse_args(argv)
    romfs = args.romfs or args.romfs_image is not None
    try:
        elf = firmware(args.board, args.heap, romfs=romfs, esp32=args.esp32)
        print(elf)
        if args.run:
            with Qemu(args.board, args.heap, romfs=romfs, romfs_image=args.romfs_image,
                      esp32=args.esp32) as board:
                print(f"{args.board} running: its UART is {board.port} (mpremote connect "
                      f"{board.port} ...); Ctrl-C stops it")
                with contextlib.suppress(KeyboardInterrupt):
                    board.process.wait()
    except QemuUnavailable as exc:
        print(f"qemu_firmware: skipped: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
