"""The MicroPython side of a virtual board: code the supervisor types into the VM.

Every VM start goes the same way: the unix port opens its REPL on the pty, the supervisor
enters the raw REPL and sends `boot_source(...)`, which mounts the flash folder as `/`
(so absolute paths behave as on a board), installs the `machine` extension (`reset()` as
a hard reset), prints a start marker, runs boot.py (and main.py unless the raw REPL is
to be re-entered) in `__main__`'s globals and prints an end marker. As a board's own
boot does (MicroPython's pyexec), Ctrl-C is on only while boot.py or main.py runs, not
while the VM is set up or a script compiled: console bytes that arrive during the boot are
data for main.py (a serial master's frames often begin with 0x03), and an interrupt that
comes as a script ends is printed there and the next script still runs. Running boot.py and
main.py from the raw REPL rather than from `-c` matters: only there does `SystemExit`
(`sys.exit`, `machine.reset()`, `machine.soft_reset()`) end the process, as it resets a
board.
"""

from __future__ import annotations

# Exit status of the VM that asks the supervisor for a hard reset (fresh start that runs
# boot.py and main.py, raw REPL forgotten). Status 0 is a soft reset.
HARD_RESET_STATUS = 117

# Mount point of the supervisor's helper modules while the VM boots; unmounted before
# boot.py runs, so the board's file system shows only its flash.
SYS_MOUNT = "/.vboard"

MACHINE_PY = '''"""machine for the virtual board: the unix port's machine plus reset()."""
import sys

_self = sys.modules["machine"]
_saved = sys.path[:]
sys.path.clear()
del sys.modules["machine"]
try:
    import machine as _builtin
finally:
    sys.path[:] = _saved
    sys.modules["machine"] = _self
for _name in dir(_builtin):
    if not _name.startswith("__"):
        globals()[_name] = getattr(_builtin, _name)
del _self, _saved, _name
%(bus)s

_UID = %(uid)r


def unique_id():
    """The board's id: derived from its flash folder (microswarm.bundle.flash_uid)."""
    return _UID


def reset():
    """Hard reset: the supervisor cuts the VM off at the marker (a board prints nothing
    after a reset) and starts a fresh one that runs boot.py and main.py."""
    sys.stdout.write(%(marker)r)
    sys.exit(%(status)d)


def reset_cause():
    return 0
'''


# A board with a network chip on SPI: the bus stand-in's SPI and Pin replace the port's.
BUS_IMPORT = '''
from %s import SPI, Pin
'''


def machine_py(reset_marker: bytes, bus_module: str | None = None, uid: bytes = b"") -> str:
    """The VM's `machine`; with `bus_module`, SPI and Pin reach the board's chip model;
    `unique_id()` gives `uid`."""
    return MACHINE_PY % {
        "uid": uid,
        "marker": reset_marker.decode(),
        "status": HARD_RESET_STATUS,
        "bus": BUS_IMPORT % bus_module if bus_module else "",
    }


def boot_source(flash: str, sys_dir: str, start_marker: bytes, end_marker: bytes,
                run_main: bool, main_marker: bytes = b"") -> bytes:
    """Raw-REPL code that boots the board. Markers are ASCII; paths are absolute.
    `main_marker` is printed as main.py is about to run (compiled; Ctrl-C goes on next)."""
    return (
        "def _msw_boot():\n"
        "    import micropython, os, sys\n"
        "    micropython.kbd_intr(-1)\n"
        "    os.umount('/')\n"
        f"    os.mount(os.VfsPosix({flash!r}), '/')\n"
        f"    os.mount(os.VfsPosix({sys_dir!r}), {SYS_MOUNT!r})\n"
        "    os.chdir('/')\n"
        f"    sys.path[:] = [{SYS_MOUNT!r}]\n"
        "    import machine\n"
        "    sys.path[:] = ['', '.frozen', '/lib']\n"
        f"    os.umount({SYS_MOUNT!r})\n"
        "    g = globals()\n"
        "    del g['_msw_boot']\n"
        f"    names = {('boot.py', 'main.py') if run_main else ('boot.py',)!r}\n"
        "    try:\n"
        f"        sys.stdout.write({start_marker.decode()!r})\n"
        "        for name in names:\n"
        "            try:\n"
        "                os.stat(name)\n"
        "            except OSError:\n"
        "                continue\n"
        "            try:\n"
        "                with open(name) as f:\n"
        "                    src = f.read()\n"
        "                code = compile(src, name, 'exec')\n"
        "                src = None\n"
        "                if name == 'main.py':\n"
        f"                    sys.stdout.write({main_marker.decode()!r})\n"
        "                micropython.kbd_intr(3)\n"
        "                try:\n"
        "                    exec(code, g)\n"
        "                finally:\n"
        "                    micropython.kbd_intr(-1)\n"
        "                    for _ in (0,):\n"
        "                        pass\n"
        "            except SystemExit:\n"
        "                raise\n"
        "            except BaseException as e:\n"
        "                sys.print_exception(e)\n"
        "            src = code = None\n"
        "    except SystemExit:\n"
        "        raise\n"
        "    except BaseException as e:\n"
        "        sys.print_exception(e)\n"
        "    while True:\n"
        "        try:\n"
        f"            sys.stdout.write({end_marker.decode()!r})\n"
        "            break\n"
        "        except KeyboardInterrupt:\n"
        "            pass\n"
        "_msw_boot()\n"
    ).encode()
