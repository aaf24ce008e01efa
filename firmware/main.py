"""Boot entry of a microswarm node: keep the console's Ctrl-C from interrupting the boot of
a serial node, load the kernel packages on the flash and settle the kernels' versions
(msw_boot.py, dropped afterwards), then run the worker (worker.py)."""
# First of all, before any jump where MicroPython raises a pending interrupt: Ctrl-C off.
# A master may already be sending frames on a serial node's console (the node reset
# mid-job), COBS frames often begin with 0x03, and the board's REPL turned Ctrl-C on for
# main.py. An interrupt that came before this line is raised at the loop's jump, inside
# the try, and noted; a TCP node (its console is the REPL's) gets Ctrl-C back below and
# stops its boot on it, a serial node drops it.
try:
    import micropython

    micropython.kbd_intr(-1)
    for _ in (0,):
        pass
    _ = False  # `_` (in the firmware's names) says whether an interrupt came
except KeyboardInterrupt:
    _ = True

import gc  # noqa: E402

from micropython import const  # noqa: E402

# While the modules load, collect every 1/16 of the heap: what they keep then stays together
# low in the heap instead of strewn across all of it between their loaders' garbage, and the
# worker's frame buffers (16 KB each, four on a serial link) find room (QEMU pico2-usb: the
# largest free block after the imports 60 KB -> 186 KB). On a heap under _SMALL_HEAP it stays
# on for the whole boot: what the join and the first tasks keep then stays low too, and a
# chunked message's buffer (up to two thirds of the heap, one block) finds room. ESP32 set
# on its heap (QEMU, 32-bit, modules in ROMFS), after the first task: largest free block
# 13.5 KB of 52.2 KB free with it off after the imports, 50.1 KB of 51.8 KB with it kept.
# It costs collections: the unix VM board (2 MB heap) with it kept spent 90-100 us of VM
# CPU per echo task against 53-57 without (microswarm bench firmware, 3 rounds each,
# alternating), so a larger heap, where a message's block is easier to find, turns it off.
_SMALL_HEAP = const(262144)
# (gc.threshold() read back at the end says whether the heap was small: no global for it,
# each name main.py has is interned at boot)
try:
    gc.threshold(gc.mem_free() // 16)
except AttributeError:  # a port without it
    pass


def serial():  # ("serial" and "_" are interned already: each new name here is, at boot)
    # whether the link is serial: config.json's link, else the board's first
    # (config.load_config's rule), read with json alone: importing config here would leave
    # its modules low in the heap, and the 32-bit boards then find no 16 KB hole for the
    # frame buffers
    import json

    try:
        with open("config.json") as f:
            link = json.load(f).get("link")
        if not link:
            with open("board.json") as f:
                link = json.load(f)["links"][0]
        return link == "serial"
    except Exception:
        return False  # worker.main() says what is wrong, at the REPL


if not serial():
    micropython.kbd_intr(3)
    if _:
        raise KeyboardInterrupt
del serial, _

import sys  # noqa: E402

import msw_boot  # noqa: E402

msw_boot.load_installed()
del msw_boot
sys.modules.pop("msw_boot", None)

import worker  # noqa: E402

try:
    if gc.threshold() >= _SMALL_HEAP // 16:  # the heap at boot was not small: off again
        gc.threshold(-1)
except AttributeError:
    pass
worker.main()
