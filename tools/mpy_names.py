"""The names (qstrs) a set of bytecode .mpy modules interns when a board loads them, and the
pools MicroPython allocates for them.

  python tools/mpy_names.py --board esp32-devkit-w5500           # per module, the total, the pools
  python tools/mpy_names.py --board esp32-devkit-w5500 --list    # and every name, by module
  python tools/mpy_names.py --board esp32-devkit-w5500 --link tcp  # the TCP node's set
  python tools/mpy_names.py --board esp32-devkit-w5500 --link tcp --qemu  # and on QEMU

A bytecode .mpy (version 6) starts with a 4-byte header (b"M", the version, the arch and
sub-version, the small-int bits), then, when the header's flag bit says so, the arch flags;
then the number of qstrs and of constant objects (variable-length unsigned ints, 7 bits a
byte, most significant first), then the qstr table: per name one uint whose low bit set
means "the firmware's static name number uint >> 1", else uint >> 1 bytes of text and a
NUL. Loading a module interns each of those names (py/persistentcode.c, `load_qstr`):
one the firmware does not already hold costs a pool entry, and from a file system its
characters plus a NUL in a chunk too (from ROMFS the characters stay in the image). The
import also interns the module's file name (its __file__: py/builtinimport.c), main.py's
run the script's, and msw_boot's boot the kernel names and modules of the stubs it
registers from a manifest (msw_boot._interned): the count here holds those too.

A name the firmware's image holds (its static and ROM names: QSTRS_FILE, taken from the
QEMU firmware build's genhdr/qstrdefs.generated.h) costs nothing. The others go into pools
on the heap (`qstr_add`, py/qstr.c): the first holds 2 x MICROPY_ALLOC_QSTR_ENTRIES_INIT
(10) = 20 names and each next one twice the last, so the boundaries are 20, 60, 140, 300,
620, 1260 names; crossing one allocates the next, mostly empty pool (7 bytes an entry on
a 32-bit port with 2-byte hashes and 1-byte lengths, plus a 24-byte header).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from itertools import accumulate
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the ROM names of the QEMU AN500 firmware the footprint bench measures on (one a line)
QSTRS_FILE = ROOT / "tools" / "qemu_an500_qstrs.txt"
# ... and of the build that carries asyncio as the ESP32 and RP2350 firmware do (frozen:
# its names in the image too), which the footprint bench measures on and --qemu runs
ESP32_QSTRS_FILE = ROOT / "tools" / "qemu_esp32_qstrs.txt"
ENTRIES_INIT = 10  # MICROPY_ALLOC_QSTR_ENTRIES_INIT: the const pool's `alloc`
ENTRY_BYTES = 4 + 2 + 1  # a pointer, a 2-byte hash, a 1-byte length (32-bit, EXTRA_FEATURES)
POOL_HEADER_BYTES = 6 * 4
ARCH_FLAGS_BIT = 0x40  # header byte 2: arch flags follow the header
# The ESP32 node's names, in the order the QEMU measurement loads them: asyncio's package
# (no asyncio in that firmware), the modules the serial join loads (config and the join's
# code, then dropped: their names stay interned), then what the first echo and sha256
# tasks load (the bench's meter package rides along: fp_meter).
ASYNCIO_MODULES = ("asyncio/__init__", "asyncio/core", "asyncio/event", "asyncio/stream",
                   "asyncio/task")
JOIN_MODULES = ("main", "msw_boot", "config", "msgdefs", "cbor", "auth", "frame",
                "frame_serial", "board", "msw_kernel", "engine_log", "engine", "engine_join",
                "link_serial", "worker", "worker_up", "fp_meter")
TASK_MODULES = ("kernels_small",)
# The TCP node's (`--link tcp`): the same, with the TCP link and its codec half, the WIZnet
# driver's bring-up (imported first: it imports the driver; dropped after use, its names
# stay interned), the driver and its DHCP client (loaded for the lease, then dropped).
# A W6100 board adds the IPv6 helpers (wiznet6), which it loads for an IPv6 master.
TCP_JOIN_MODULES = ("main", "msw_boot", "config", "msgdefs", "cbor", "auth", "frame",
                    "frame_tcp", "board", "msw_kernel", "engine_log", "engine", "engine_join",
                    "link_tcp", "wiznet_up", "wiznet", "wiznet_dhcp", "worker",
                    "worker_up", "fp_meter")
IPV6_MODULES = ("wiznet6",)
# What the bench's board holds before main.py runs (the REPL, the flash file system's
# mount, mpremote's file names): `micropython.qstr_info()` there said n_qstr=67.
HARNESS_NAMES = 67


class MpyError(ValueError):
    """Not a bytecode .mpy this reader understands."""


def _uint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    while True:
        if at >= len(data):
            raise MpyError("truncated variable-length int")
        byte = data[at]
        at += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, at


def qstr_table(data: bytes) -> list[str | int]:
    """A .mpy's qstr table: a name's text, or the number of a static name of the firmware."""
    if len(data) < 4 or data[0:1] != b"M" or data[1] != 6:
        raise MpyError("not a version 6 .mpy")
    at = 4
    if data[2] & ARCH_FLAGS_BIT:
        _, at = _uint(data, at)
    count, at = _uint(data, at)
    _, at = _uint(data, at)  # the constant objects that follow
    names: list[str | int] = []
    for _ in range(count):
        value, at = _uint(data, at)
        if value & 1:
            names.append(value >> 1)
            continue
        end = at + (value >> 1)
        if end >= len(data) or data[end] != 0:
            raise MpyError("qstr without its NUL")
        names.append(data[at:end].decode())
        at = end + 1
    return names


def firmware_names(path: Path = QSTRS_FILE) -> set[str]:
    """The names a firmware image holds: QSTRS_FILE's lines, a build's
    genhdr/qstrdefs.generated.h (its QDEF lines), or a build's folder (that file and the
    frozen modules' pool in its frozen_content.c: the ESP32-like build's asyncio)."""
    if path.is_dir():
        names = firmware_names(path / "genhdr" / "qstrdefs.generated.h")
        frozen = path / "frozen_content.c"
        if frozen.is_file():
            pool = re.search(r"mp_qstr_frozen_const_pool = \{.*?\{\n(.*?)\n +\},",
                             frozen.read_text(), re.S)
            if pool is None:
                raise MpyError(f"no frozen qstr pool in {frozen}")
            for line in pool.group(1).split("\n"):
                line = line.strip().rstrip(",")
                if line.startswith('"') and line.endswith('"'):
                    names.add(line[1:-1].encode().decode("unicode_escape"))
        return names
    text = path.read_text()
    if path.name.endswith(".h"):
        found = re.findall(r'^QDEF[01]\(\w+, \d+, \d+, "(.*)"\)$', text, re.M)
        return {name.encode().decode("unicode_escape") for name in found}
    return {line for line in text.split("\n") if line and not line.startswith("#")}


def new_names(modules: Mapping[str, bytes], order: Iterable[str], rom: set[str],
              stubs: bool = True) -> dict[str, list[str]]:
    """Per module in `order` (a key of `modules`, without ".mpy"), the names its load adds
    to the heap's pools, not in `rom` and not added by a module before it: its name table's,
    its file's name (the import interns it as the module's __file__, py/builtinimport.c; a
    script's, main.py, as the file it runs) and, for msw_boot (`stubs`: when its boot runs),
    the kernels and modules of the stubs it registers from the manifests among `modules`
    (msw_boot._interned)."""
    seen = set(rom)
    added: dict[str, list[str]] = {}
    for name in order:
        names = [q for q in qstr_table(modules[name + ".mpy"]) if isinstance(q, str)]
        names.append("main.py" if name == "main" else name + ".mpy")
        if name == "msw_boot" and stubs:
            names += stub_names(modules)
        fresh = []
        for q in names:
            if q not in seen:
                seen.add(q)
                fresh.append(q)
        added[name] = fresh
    return added


def stub_names(files: Mapping[str, bytes]) -> list[str]:
    """The kernel names and modules of the stubs the kernel manifests among `files`
    (kpkg_*.json, msw_boot.py's format) register: the modules that load on their first task."""
    out = []
    for fname in sorted(files):
        if fname.startswith("kpkg_") and fname.endswith(".json"):
            for stem, kernels in sorted(json.loads(files[fname]).get("kernels", {}).items()):
                out += [stem, *sorted(kernels)]
    return out


def boundaries(limit: int = 10_000) -> list[int]:
    """How many dynamic names fill the pools: 20, 60, 140, 300, 620, 1260, ..."""
    return list(accumulate(pools(limit)))


def pools(count: int) -> list[int]:
    """The pools (their `alloc`) that `count` dynamic names occupy."""
    sizes, total, alloc = [], 0, ENTRIES_INIT
    while total < count:
        alloc *= 2
        total += alloc
        sizes.append(alloc)
    return sizes


def pool_bytes(count: int) -> int:
    """The heap the pools of `count` dynamic names take (GC blocks of 16 bytes)."""
    return sum(-(-(POOL_HEADER_BYTES + ENTRY_BYTES * alloc) // 16) * 16
               for alloc in pools(count))


def margin(count: int) -> int:
    """Names left before the next boundary (0: the last pool is full)."""
    return next(b for b in boundaries(count + 1) if b >= count) - count


def esp32_modules(board: str = "esp32-devkit-w5500", asyncio: bool = False) -> dict[str, bytes]:
    """The .mpy files the footprint bench loads for `board` (armv7emsp for an ESP32, as
    there), the bench's meter package included; `asyncio`: with asyncio's package (from
    the QEMU firmware's MicroPython source, which the plain build loads from the file
    system: bench footprint --plain-firmware)."""
    for folder in (ROOT / "host", ROOT / "tools"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    from microswarm.bench import footprint
    from microswarm.deploy.build import compile_module

    files = footprint.deploy_files(board, "{}", meter=True, asyncio_package=asyncio)
    # main.py stays source on the board: its compiler interns what its .mpy would hold
    files["main.mpy"] = compile_module("main.py", files["main.py"], "armv7emsp")
    return {name: data for name, data in files.items()
            if name.endswith(".mpy") or name.startswith("kpkg_")}


def join_modules(link: str = "serial", ipv6: bool = False) -> tuple[str, ...]:
    """The modules a node on `link` loads by the join, in load order; `ipv6`: with the
    WIZnet driver's IPv6 helpers (a W6100 board with an IPv6 master)."""
    if link == "serial":
        return JOIN_MODULES
    if link != "tcp":
        raise ValueError(f"no such link: {link!r} (serial or tcp)")
    if not ipv6:
        return TCP_JOIN_MODULES
    at = TCP_JOIN_MODULES.index("wiznet_dhcp") + 1
    return TCP_JOIN_MODULES[:at] + IPV6_MODULES + TCP_JOIN_MODULES[at:]


def board_ipv6(board: str) -> bool:
    """Whether `board`'s network chip is a W6100 (the one with IPv6)."""
    if str(ROOT / "host") not in sys.path:
        sys.path.insert(0, str(ROOT / "host"))
    from microswarm import paths

    return paths.load_board(board).get("nic") == "w6100"


def join_names(modules: Mapping[str, bytes], rom: set[str],
               join: tuple[str, ...] = JOIN_MODULES) -> tuple[int, int]:
    """How many names the ESP32 set adds by the join and after the first tasks, asyncio's
    package frozen (its names in the image), the bench's REPL's names not included;
    `join`: the modules loaded by the join (join_modules())."""
    added = new_names(modules, join + TASK_MODULES, rom)
    by_join = sum(len(added[name]) for name in join)
    return by_join, by_join + sum(len(added[name]) for name in TASK_MODULES)


QSTR_INFO = re.compile(r"n_pool=(\d+), n_qstr=(\d+)")
QSTR_NAME = re.compile(r"^Q\((.*)\)\r?$", re.M)  # a name `micropython.qstr_info(1)` lists
# What --qemu runs on the board: the set's imports between two qstr_info() lines.
# The modules a node drops after use leave the heap here too (their names stay interned):
# the ESP32's heap holds the set's bytecode from the file system no other way.
QEMU_BEFORE = "import micropython; micropython.qstr_info(1)"
QEMU_SCRIPT = """
import gc, micropython, sys
for _n in {names!r}:
    __import__(_n)
    if _n in {dropped!r}:
        sys.modules.pop(_n, None)
    gc.collect()
micropython.qstr_info()
"""
DROPPED = ("msw_boot", "config", "engine_join", "wiznet_up", "wiznet_dhcp", "worker_up")


def qemu_count(board: str, names: tuple[str, ...]) -> tuple[tuple[int, int], tuple[int, int],
                                                            Path, set[str]]:
    """Import `names` (the board's .mpy files on the flash file system) on the QEMU build
    that carries asyncio as the ESP32 firmware does, with the board's heap: (n_pool,
    n_qstr) of `micropython.qstr_info()` before and after, the build's folder (its ROM
    names: firmware_names()), and the names the board's pools held before."""
    for folder in (ROOT / "host", ROOT / "tools"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    import qemu_firmware

    from microswarm import paths

    heap = int(paths.load_board(board)["heap_bytes"])
    files = esp32_modules(board)
    files.pop("main.mpy")  # (not imported: it would start the worker)
    with qemu_firmware.Qemu("MPS2_AN500", heap, esp32=True) as qemu:
        qemu.install(files)
        # before: what the REPL, the flash's mount and mpremote hold; the script's own
        # names are the modules' names and `_n`
        out = qemu.exec(QEMU_BEFORE)
        held = set(QSTR_NAME.findall(out))
        out += qemu.exec(QEMU_SCRIPT.format(names=list(names), dropped=DROPPED))
        rom = qemu.elf.parent
    found = [(int(a), int(b)) for a, b in QSTR_INFO.findall(out)]
    if len(found) != 2:
        raise RuntimeError(f"no qstr_info() figures from the board:\n{out[-2000:]}")
    return found[0], found[1], rom, held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", default="esp32-devkit-w5500")
    parser.add_argument("--rom", type=Path, default=QSTRS_FILE,
                        help="the firmware's names: a names file, qstrdefs.generated.h or "
                             "a firmware build's folder")
    parser.add_argument("--write-rom", type=Path, default=None,
                        help="write the names of --rom (a qstrdefs.generated.h) to this file")
    parser.add_argument("--list", action="store_true", help="print every new name")
    parser.add_argument("--link", choices=("serial", "tcp"), default="serial",
                        help="the link the node joins on (tcp: the WIZnet driver, its "
                             "bring-up and DHCP; on a W6100 board its IPv6 helpers too)")
    parser.add_argument("--asyncio-files", action="store_true",
                        help="asyncio's package loaded from the file system (the bench's "
                             "firmware today) instead of frozen (an ESP32's)")
    parser.add_argument("--qemu", action="store_true",
                        help="also import the set (main.py aside) on the QEMU build that "
                             "carries asyncio as an ESP32 does, with the board's heap, and "
                             "print what micropython.qstr_info() says beside the count")
    args = parser.parse_args(argv)
    rom = firmware_names(args.rom)
    if args.write_rom:
        if args.rom.is_dir():
            head = ("# The names the QEMU AN500 firmware built as the ESP32's carries asyncio\n"
                    "# (tools/qemu_firmware.py --esp32) holds: its genhdr/qstrdefs.generated.h\n"
                    "# and its frozen modules' pool (frozen_content.c), one a line:\n"
                    "# python tools/mpy_names.py --rom BUILD_FOLDER --write-rom FILE\n")
        else:
            head = ("# The names the QEMU AN500 firmware's image holds (its genhdr/"
                    "qstrdefs.generated.h),\n# one a line: python tools/mpy_names.py --rom "
                    "QSTRDEFS_H --write-rom FILE\n")
        args.write_rom.write_text(
            head + "".join(f"{n}\n" for n in sorted(rom) if n and "\n" not in n))
        return 0
    modules = esp32_modules(args.board, asyncio=args.asyncio_files)
    join = join_modules(args.link, args.link == "tcp" and board_ipv6(args.board))
    order = join + TASK_MODULES
    if args.asyncio_files:
        order = ASYNCIO_MODULES + order
    added = new_names(modules, order, rom)
    total = 0
    for name, fresh in added.items():
        total += len(fresh)
        print(f"{name:22} {len(fresh):4} {total:5}")
        if args.list:
            print("    " + " ".join(fresh))
        if name == join[-1]:
            print(f"by the join: {total} names (+{HARNESS_NAMES} the bench's REPL holds), "
                  f"pools {pools(total + HARNESS_NAMES)} "
                  f"({pool_bytes(total + HARNESS_NAMES)} bytes), "
                  f"{margin(total + HARNESS_NAMES)} before the next pool")
    print(f"after the first tasks: {total} names (+{HARNESS_NAMES} the bench's REPL holds), "
          f"pools {pools(total + HARNESS_NAMES)} ({pool_bytes(total + HARNESS_NAMES)} bytes), "
          f"{margin(total + HARNESS_NAMES)} before the next pool")
    if args.qemu:
        imported = tuple(name for name in order if name != "main")
        before, after, build_rom, held = qemu_count(args.board, imported)
        # the same count without main.py and without msw_boot's boot (the board only
        # imports the modules), the names of the build measured on left out (its static
        # names and its frozen asyncio package's) and those the board held before (the
        # harness's REPL interned the short file names it copied)
        fresh = new_names(modules, imported, firmware_names(build_rom), stubs=False)
        predicted = len({q for names in fresh.values() for q in names} - held)
        print(f"on QEMU (ESP32-like build): n_qstr {before[1]} -> {after[1]} "
              f"(+{after[1] - before[1]}; counted here, without what the board held: "
              f"+{predicted}), n_pool {before[0]} -> {after[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
