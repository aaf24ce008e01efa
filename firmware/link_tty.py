"""The serial link's console on the unix port (a virtual board): a pseudo-terminal whose
read can be told to return the bytes it has. link_serial imports this only where the port
has termios; a board's UART or USB console never loads it."""

import os
import termios

from micropython import const

_VTIME = const(5)  # indices of a termios attribute list's control characters (Linux)
_VMIN = const(6)


def reads_what_is_there(rx):
    """Make a pseudo-terminal console's read return the bytes it has (none: 0) instead of
    waiting for all it was asked for; returns (fd, the attributes to restore), or None
    where the console is no pty's terminal end (a pipe; a pty's controlling end, whose
    reads ignore VMIN)."""
    try:
        fd = rx.fileno()
        me = os.stat("/proc/self/fd/" + str(fd))
        if me[2] != os.stat("/dev/pts")[2] or me[1] == os.stat("/dev/pts/ptmx")[1]:
            return None
        old = termios.tcgetattr(fd)
    except (AttributeError, OSError):
        return None
    new = old[:6] + [list(old[6])]
    new[6][_VMIN] = 0
    new[6][_VTIME] = 0
    try:
        termios.tcsetattr(fd, termios.TCSANOW, new)
    except OSError:
        return None
    return fd, old


def restore(tty):
    """Give the console back the attributes reads_what_is_there() found."""
    termios.tcsetattr(tty[0], termios.TCSANOW, tty[1])
