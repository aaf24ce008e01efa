"""The node's links to its master, behind one small interface:

    await link.open()                 connect (raises OSError when it cannot)
    n = await link.read_into(view)    some bytes into `view`; raises LinkClosed at EOF
    n = link.read_now(view)           the same without waiting: None when none are there yet
                                      (a frame already in costs no coroutine and no poll)
    link.put(data)                    queue `data` (copied when it cannot leave at once)
    link.pending() -> bool            bytes queued by put() wait for drain()
    await link.drain()                send what put() queued, in order
    link.close()

Each kind of link is a module of its own, imported by the worker for the link a node uses
(a TCP node never loads the serial link's code, nor a serial node the TCP link's):

link_tcp.TcpLink dials the master over a `net` object: MicroPython's socket module or a
driver object with the same calls (socket(), getaddrinfo(); sockets that connect, read into
a buffer, write and are pollable through the stream ioctl). Frames travel back to back.
link_tcp.find_master() finds the master with a UDP DISCOVER beacon answered by ANNOUNCE.

link_serial.SerialLink speaks COBS frames on the REPL's own stdin/stdout. From the first
time it opens until the worker leaves, Ctrl-C is turned off (`micropython.kbd_intr(-1)`),
between sessions too: every COBS frame begins with a code byte, often 0x03, and a master
that speaks while the worker waits to dial again must not interrupt it. 0x03 is data; the
way back to the REPL is the frame codec's break rule (b"\\r\\x03" or b"\\x03\\x03" at the
start of a frame, what mpremote sends, and something no v1 frame can begin with). On a
break, and whenever the worker stops, `link_serial.console_to_repl()` turns Ctrl-C back on
and the board drops to its REPL.
"""


class LinkClosed(OSError):
    pass
