"""The interned names (qstrs) the ESP32 set adds to the heap's pools, counted from the .mpy
files on the host (tools/mpy_names.py): no QEMU needed."""

from __future__ import annotations

import sys

import pytest

from microswarm import paths
from support.qemu import firmware_tool

tools = paths.tools_dir()
if tools is None:
    pytest.skip("needs a source checkout (tools/mpy_names.py)", allow_module_level=True)
sys.path.insert(0, str(tools))
import mpy_names  # noqa: E402


def test_qstr_table_of_a_compiled_module():
    from microswarm.deploy.build import compile_module

    source = b"import gc\n_K = const(7)\nPUBLIC = 3\ndef spelled_out(x):\n    return x.hex()\n"
    names = mpy_names.qstr_table(compile_module("probe.py", source, "armv7emsp"))
    texts = {n for n in names if isinstance(n, str)}
    # the module, its globals, functions, arguments and attributes; a `_` const folds away
    assert {"probe", "PUBLIC", "spelled_out"} <= texts
    assert "_K" not in texts
    assert all(isinstance(n, (str, int)) for n in names)
    with pytest.raises(mpy_names.MpyError):
        mpy_names.qstr_table(b"not an mpy")


def test_pool_arithmetic_of_py_qstr_c():
    # the const pool's alloc is 10; each new pool twice the last one's
    assert mpy_names.boundaries(1260) == [20, 60, 140, 300, 620, 1260]
    assert mpy_names.pools(620) == [20, 40, 80, 160, 320]
    assert mpy_names.pools(621) == [20, 40, 80, 160, 320, 640]
    assert mpy_names.margin(610) == 10 and mpy_names.margin(620) == 0
    # 640 entries of 7 bytes and a 24-byte header, in 16-byte GC blocks
    assert mpy_names.pool_bytes(621) - mpy_names.pool_bytes(620) == 4512


def test_firmware_names_file_holds_the_rom_names():
    rom = mpy_names.firmware_names()
    assert {"append", "collect", "mem_alloc", "__init__", "const"} <= rom
    assert len(rom) > 600


def test_esp32_set_stays_under_its_pool_boundary():
    """The ESP32 node's own names after the join and the first tasks, with asyncio frozen
    as on an ESP32, plus what the bench's REPL holds, fill the fifth pool (620 names) but
    do not open the sixth: one name past it allocates a 640-entry pool, 4.5 KB of heap on
    a 32-bit board that stays mostly empty. If this fails, a change added names: take
    some out (tools/mpy_names.py --list says which module adds which) or accept 4.5 KB
    more resident heap and move this limit with a figure from `microswarm bench
    footprint`."""
    rom = mpy_names.firmware_names()
    by_join, after_tasks = mpy_names.join_names(mpy_names.esp32_modules(), rom)
    held = mpy_names.HARNESS_NAMES
    assert by_join <= after_tasks
    assert after_tasks + held <= mpy_names.boundaries()[4], (
        f"the ESP32 set interns {after_tasks} names by its first tasks (+{held} the "
        f"bench's REPL holds): past {mpy_names.boundaries()[4]}, MicroPython allocates a "
        f"640-entry qstr pool (about 4.5 KB of heap on a 32-bit board)")


# The TCP node's boards: a W5500 on an ESP32 and on an RP2350, a W6100 (IPv6 helpers too).
TCP_BOARDS = ("esp32-devkit-w5500", "w5500-evb-pico2", "w6100-evb-pico2")


@pytest.mark.parametrize("board", TCP_BOARDS)
def test_tcp_node_stays_under_its_pool_boundary(board):
    """The TCP node's names after the join and the first tasks (the WIZnet driver, its
    bring-up and DHCP client, both dropped after use but their names interned for good,
    the TCP link; on a W6100 board the IPv6 helpers), counted against the names of the
    build that carries asyncio as the ESP32 and RP2350 firmware do (frozen: its names are
    in the image, tools/qemu_esp32_qstrs.txt), stay within five pools: one name past 620
    allocates a 640-entry pool, about 4.5 KB of heap on a 32-bit board, mostly empty.
    Nothing else is counted: a board that starts main.py at power-up has interned next to
    nothing before it, while on QEMU the bench's REPL, flash mount and mpremote hold 59
    names first (`tools/mpy_names.py --link tcp --qemu` prints both). If this fails, a
    change added names: `tools/mpy_names.py --board BOARD --link tcp --list` says which
    module adds which."""
    rom = mpy_names.firmware_names(mpy_names.ESP32_QSTRS_FILE)
    join = mpy_names.join_modules("tcp", mpy_names.board_ipv6(board))
    by_join, after_tasks = mpy_names.join_names(mpy_names.esp32_modules(board), rom, join)
    assert by_join <= after_tasks
    assert after_tasks <= mpy_names.boundaries()[4], (
        f"the TCP node of {board} interns {after_tasks} names by its first tasks: past "
        f"{mpy_names.boundaries()[4]}, MicroPython allocates a 640-entry qstr pool (about "
        f"4.5 KB of heap on a 32-bit board)")


def test_tcp_sets_differ_by_the_ipv6_helpers():
    plain, v6 = mpy_names.join_modules("tcp"), mpy_names.join_modules("tcp", True)
    assert set(v6) - set(plain) == {"wiznet6"}
    assert {"wiznet_up", "wiznet", "wiznet_dhcp", "link_tcp", "frame_tcp"} <= set(plain)
    assert not {"link_serial", "frame_serial"} & set(plain)
    assert mpy_names.board_ipv6("w6100-evb-pico2")
    assert not mpy_names.board_ipv6("esp32-devkit-w5500")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tcp_count_is_what_the_board_interns():
    """`python tools/mpy_names.py --board esp32-devkit-w5500 --link tcp --qemu`: the names the
    TCP set's imports add on the QEMU build that carries asyncio frozen, as
    micropython.qstr_info() counts them, are the ones counted from the .mpy files' name
    tables and each import's file name (its __file__), less those the board held before."""
    import contextlib
    import io
    import re

    qemu_firmware = firmware_tool("MPS2_AN500", 111168, esp32=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        mpy_names.main(["--board", "esp32-devkit-w5500", "--link", "tcp", "--qemu"])
    found = re.search(r"n_qstr (\d+) -> (\d+) \(\+(\d+); counted here, without what the board "
                      r"held: \+(\d+)\), n_pool (\d+) -> (\d+)", out.getvalue())
    assert found, out.getvalue()
    before, after, measured, expected = (int(found.group(i)) for i in range(1, 5))
    assert after - before == measured
    # names interned at run time otherwise (a frozen package's dotted submodule name,
    # `asyncio.core`) would differ
    assert abs(measured - expected) <= 3, out.getvalue()


def test_wiznet_register_map_indexes_agree():
    """The WIZnet chips' register maps are tuples (wiznet_up.py's _W5500 and _W6100) read
    by index; each module that reads one has the indexes it reads as _const()s (no name
    interned; generated from wiznet_up.py's by tools/gen_protocol.py), and every index
    names one entry of both maps."""
    import re

    from microswarm import paths as msw_paths

    firmware = msw_paths.firmware_dir()
    declared: dict[str, dict[str, int]] = {}
    for module in ("wiznet_up", "wiznet", "wiznet_dhcp"):
        text = (firmware / f"{module}.py").read_text()
        for name, value in re.findall(r"^(_\w+) = const\((\d+)\)", text, re.M):
            declared.setdefault(name, {})[module] = int(value)
    up = (firmware / "wiznet_up.py").read_text()
    fields = [name for name, modules in declared.items() if "wiznet_up" in modules
              and name not in ("_SOCKETS",)]
    assert len(fields) >= 30
    for name in fields:
        values = set(declared[name].values())
        assert len(values) == 1, f"{name} has indexes {declared[name]}"
    # every index names one entry of both maps
    for chip in ("_W5500", "_W6100"):
        body = re.search(chip + r" = const\(\((.*?)\n\)\)", up, re.S)
        assert body, chip
        entries = [e for e in re.sub(r"#.*", "", body.group(1)).replace("\n", " ").split(",")
                   if e.strip()]
        assert sorted(declared[name]["wiznet_up"] for name in fields) == list(
            range(len(entries))), chip
