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
    _interrupted = False
except KeyboardInterrupt:
    _interrupted = True

import gc  # noqa: E402

# While the modules load, collect every 1/16 of the heap: what they keep then stays together
# low in the heap instead of strewn across all of it between their loaders' garbage, and the
# worker's frame buffers (16 KB each, four on a serial link) find room (QEMU pico2-usb: the
# largest free block after the imports 60 KB -> 186 KB).
_threshold = getattr(gc, "threshold", None)
if _threshold is not None:
    _threshold(gc.mem_free() // 16)


def _serial_link():
    # config.json's link, else the board's first (config.load_config's rule), read with
    # json alone: importing config here would leave its modules low in the heap, and the
    # 32-bit boards then find no 16 KB hole for the frame buffers
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


if not _serial_link():
    micropython.kbd_intr(3)
    if _interrupted:
        raise KeyboardInterrupt
del _serial_link, _interrupted

import sys  # noqa: E402

import msw_boot  # noqa: E402

msw_boot.load_installed()
del msw_boot
sys.modules.pop("msw_boot", None)

import worker  # noqa: E402

if _threshold is not None:
    _threshold(-1)
worker.main()
