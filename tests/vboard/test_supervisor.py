"""The supervisor makes the unix port behave like a board: resets, raw REPL, Ctrl-C, flash."""

from __future__ import annotations

import time

import pytest

from microswarm.deploy.mpremote import Mpremote

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
BOOT_FILES = {
    "boot.py": "f = open('boots.log', 'a'); f.write('b'); f.close()\n",
    "main.py": "f = open('boots.log', 'a'); f.write('m'); f.close()\nprint('main says hi')\n",
}


def enter_raw_repl(console) -> None:
    console.write(b"\r\x03")
    console.write(b"\r\x01")
    console.expect(RAW_PROMPT)


def boots_log(console) -> str:
    return console.raw_exec("print(open('boots.log').read())").decode().strip()


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_power_on_runs_boot_then_main_and_leaves_the_friendly_repl(blank_board, console_of):
    vb = blank_board(BOOT_FILES)
    wait_for(lambda: (vb.flash / "boots.log").exists())
    console = console_of(vb.serial_port)
    console.write(b"\r")
    console.expect(b">>> ")
    console.write(b"print(40 + 2)\r")
    console.expect(b"42")
    assert (vb.flash / "boots.log").read_text() == "bm"
    assert vb.serial_link.resolve() == type(vb.serial_link)(vb.serial_port)


def test_soft_reset_in_raw_repl_prints_banner_runs_boot_only_and_reenters_raw(
    blank_board, console_of
):
    vb = blank_board(BOOT_FILES)
    wait_for(lambda: (vb.flash / "boots.log").exists())
    console = console_of(vb.serial_port)
    enter_raw_repl(console)
    console.write(b"\x04")
    console.expect(b"MPY: soft reboot\r\n")
    console.expect(RAW_PROMPT)
    assert boots_log(console) == "bmb"
    assert console.raw_exec("import os; print(os.getcwd(), sorted(os.listdir('/')))") == (
        b"/ ['boot.py', 'boots.log', 'main.py']\n"
    )
    vb.wait_boots(2)
    assert vb.boots == 2


def test_soft_reset_in_friendly_repl_runs_boot_and_main(blank_board, console_of):
    vb = blank_board(BOOT_FILES)
    console = console_of(vb.serial_port)
    console.expect(b"main says hi")
    console.write(b"\r")
    console.expect(b">>> ")
    console.write(b"\x04")
    console.expect(b"MPY: soft reboot\r\n")
    console.expect(b"main says hi")
    console.expect(b">>> ")
    assert (vb.flash / "boots.log").read_text() == "bmbm"


def test_machine_reset_is_a_hard_reset_that_runs_boot_and_main(blank_board, console_of):
    vb = blank_board(BOOT_FILES)
    console = console_of(vb.serial_port)
    console.expect(b"main says hi")
    enter_raw_repl(console)
    console.write(b"import machine; machine.reset()\x04")
    console.expect(b"main says hi")
    console.expect(b">>> ")
    vb.wait_boots(2)
    assert (vb.flash / "boots.log").read_text() == "bmbm"
    enter_raw_repl(console)
    assert console.raw_exec("import machine; print(hasattr(machine, 'mem32'))") == b"True\n"


def test_ctrl_c_interrupts_only_while_the_interrupt_key_is_enabled(blank_board, console_of):
    vb = blank_board({"main.py": "import time\nprint('looping')\nwhile True:\n time.sleep_ms(5)\n"})
    console = console_of(vb.serial_port)
    console.expect(b"looping")
    console.write(b"\x03")
    console.expect(b"KeyboardInterrupt")
    console.expect(b">>> ")
    enter_raw_repl(console)
    code = (
        "import micropython, sys\n"
        "micropython.kbd_intr(-1)\n"
        "print('reading')\n"
        "data = sys.stdin.buffer.read(4)\n"
        "micropython.kbd_intr(3)\n"
        "print(repr(data))\n"
    )
    console.write(code.encode() + b"\x04")
    console.expect(b"reading")
    console.write(b"a\x03bc")
    assert console.expect(b"\x04")[:-1].strip() == b"b'a\\x03bc'"
    console.expect(b"\x04>")
    assert vb.boots == 1


def test_mpremote_interrupt_and_raw_repl_request_in_one_write_reach_a_framing_main(
    blank_board, console_of
):
    main = (
        "import sys, micropython\n"
        "micropython.kbd_intr(-1)\n"
        "print('framing')\n"
        "while True:\n"
        "    b = sys.stdin.buffer.read(2)\n"
        "    if b in (b'\\r\\x03', b'\\x03\\x03'):\n"
        "        micropython.kbd_intr(3)\n"
        "        raise KeyboardInterrupt\n"
    )
    vb = blank_board({"main.py": main})
    console = console_of(vb.serial_port)
    console.expect(b"framing")
    console.write(b"\r\x03\r\x01")  # what a slow reader sees of mpremote's two writes
    console.expect(b"KeyboardInterrupt")
    console.expect(RAW_PROMPT)
    assert console.raw_exec("print(3 * 3)") == b"9\n"
    assert vb.boots == 1


def test_sigint_interrupts_code_run_from_the_raw_repl(blank_board, console_of):
    vb = blank_board()
    console = console_of(vb.serial_port)
    enter_raw_repl(console)
    console.write(b"import time\nprint('spin')\nwhile True:\n time.sleep_ms(5)\n\x04")
    console.expect(b"spin")
    console.write(b"\x03")
    assert b"KeyboardInterrupt" in console.expect(b"\x04>")
    assert console.raw_exec("print(1 + 1)") == b"2\n"


def test_ctrl_c_during_boot_interrupts_main_py_like_a_board(blank_board, console_of):
    vb = blank_board({"main.py": "import time\nwhile True:\n time.sleep_ms(5)\n"})
    console = console_of(vb.serial_port)
    console.write(b"\r\x03")  # may arrive while the VM is still starting: it waits
    console.expect(b"KeyboardInterrupt")
    console.write(b"\r\x01")
    console.expect(RAW_PROMPT)
    assert console.raw_exec("print('alive')") == b"alive\n"
    assert vb.boots == 1


def test_a_crashed_vm_is_restarted_on_the_same_port(blank_board, console_of):
    vb = blank_board(BOOT_FILES)
    console = console_of(vb.serial_port)
    console.expect(b"main says hi")
    port = vb.serial_port
    vb.crash()
    vb.wait_boots(2)
    console.expect(b"main says hi")
    assert vb.serial_port == port
    wait_for(lambda: (vb.flash / "boots.log").read_text() == "bmbm")


def test_output_nobody_reads_is_dropped_without_stalling_the_board(blank_board):
    main = (
        "for i in range(3000):\n print('x' * 60)\n"
        "f = open('done', 'w'); f.close()\n"
    )
    vb = blank_board({"main.py": main})
    wait_for(lambda: (vb.flash / "done").exists())


def test_mpremote_cp_exec_run_soft_reset_and_reset(blank_board, mpremote_of, tmp_path):
    vb = blank_board(BOOT_FILES)
    mp = mpremote_of(vb.serial_port)
    local = tmp_path / "data.txt"
    local.write_bytes(bytes(range(256)) * 8)
    script = tmp_path / "script.py"
    script.write_text("import os\nprint('run', len(open('data.txt', 'rb').read()))\n")
    mp.put(local, "data.txt")
    assert (vb.flash / "data.txt").read_bytes() == local.read_bytes()
    assert mp.run("run", str(script)).strip() == "run 2048"
    mp.soft_reset()
    assert mp.exec("print(open('boots.log').read())").strip().startswith("bmb")
    boots = vb.boots  # before the reset: the new VM may be up before mpremote returns
    mp.reset()
    vb.wait_boots(boots + 1)
    wait_for(lambda: (vb.flash / "boots.log").read_text().endswith("bm"))
    assert mp.exec("print(len(open('data.txt', 'rb').read()))").strip() == "2048"


def test_console_over_tcp_serves_mpremote(blank_board):
    vb = blank_board(console_tcp_port=0)
    assert vb.console_port
    mp = Mpremote(f"socket://127.0.0.1:{vb.console_port}", timeout=20)
    assert mp.exec("print(6 * 7)").strip() == "42"


@pytest.mark.parametrize("heap", [64 * 1024])
def test_the_board_heap_caps_the_vm(blank_board, mpremote_of, heap):
    vb = blank_board(heap_bytes=heap)
    mp = mpremote_of(vb.serial_port)
    total = int(mp.exec("import gc; gc.collect(); print(gc.mem_free() + gc.mem_alloc())"))
    assert heap * 0.9 <= total <= heap
