"""The worker's bring-up, apart from what a running session needs (worker.py): the boot
(board.json and config.json read, the Worker made, its frame buffers), and per session the
dial (the link opened) and the Session's own setup (its engine, the HELLO payload), then
what is said when a session ends. worker.py imports it for those steps and drops it from
sys.modules before a session runs, so a joined node does not hold its code.
"""

import gc
import sys

import engine
import frame
import msw_kernel
import worker
from micropython import const

FW_VERSION = "0.2.0"
_SERIAL_CHUNK = const(512)  # serial read buffer where a read returns what the tty holds
# ... and where the console has no termios (a board's UART or USB): the link takes the ready
# bytes one at a time up to a delimiter (link_serial._take_pending), so a bigger buffer
# only means fewer rounds of the read loop per long frame, not fewer bytes read per call
_SERIAL_PENDING = const(128)
_HOLD = const(256)  # bytes of RESULTs (echo: 36 a frame) a TCP link sends in one write
# On a heap under _SMALL_HEAP (main.py's) the frame writer's buffer starts at frames of
# _SMALL_WRITER bytes and grows to max_frame at the first larger frame (frame.FrameWriter)
_SMALL_HEAP = const(262144)
_SMALL_WRITER = const(544)


def boot():
    """The boot's Worker, its frame buffers made; None after saying what is wrong with
    board.json or config.json (the config module leaves the heap once they are read)."""
    import config

    try:
        board_def = config.load_board()
        cfg = config.load_config(board_def)
        board_def = config.kept(board_def, cfg["link"])
    except config.ConfigError as e:
        print("microswarm: " + str(e))
        return None
    finally:
        sys.modules.pop("config", None)
    w = worker.Worker()
    w.board = board_def
    w.cfg = cfg
    w.net = None
    w.heap_total = gc.mem_free() + gc.mem_alloc()
    w.stats = engine.Stats(0, gc.mem_free())
    w.thread = kernel_thread()
    w.backoff = engine.BACKOFF_MIN_MS  # (engine.backoff)
    w.sessions = 0
    w.held = None  # TCP: frame.Reuse of the buffer the link holds answers in
    w.serial_buf = None
    # the frame buffers first, before DHCP and discovery scatter what they keep
    w._frames = _buffers(w, cfg["link"] == "serial")
    return w


def kernel_thread():
    """A KernelThread where the port runs threads in parallel without a global lock, else
    None (with a GIL a native-code kernel would hold the lock, and the link, anyway)."""
    if getattr(sys.implementation, "_thread", None) == "GIL":
        return None
    try:
        import _thread
    except ImportError:
        return None
    import worker_thread  # (only such a node loads it)

    return worker_thread.KernelThread(_thread)


# Frame buffers (max_frame each) are made once and reused by every session: made anew
# per session they were freed and allocated again around what the session left (DHCP,
# discovery, the engine), until no 16 KB hole was left in a heap with 250 KB free.
def _buffers(w, cobs):
    """{cobs: (reader, writer)}: the frame codec's halves for the link the node uses."""
    size = w.cfg["max_frame"]
    gc.collect()
    if cobs:  # each link's half of the codec, for the link a node uses
        import frame_serial

        reader = frame_serial.Deframer(size, chunk_views=True)
        try:
            import termios  # noqa: F401

            chunk = _SERIAL_CHUNK
        except ImportError:
            chunk = _SERIAL_PENDING
        w.serial_buf = bytearray(chunk)
    else:
        import frame_tcp

        reader = frame_tcp.StreamReader(size, copy=False, reuse=True)
        w.held = frame.Reuse(bytearray(_HOLD))
    small = _SMALL_WRITER if w.heap_total < _SMALL_HEAP else 0
    return {cobs: (reader, frame.FrameWriter(size, serial=cobs, size=small))}


async def open_link(w):
    cfg = w.cfg
    # each link's module is imported for the link a node uses (worker.py says what a link does)
    if cfg["link"] == "serial":
        import link_serial

        link = link_serial.SerialLink()
    else:
        import link_tcp

        if w.net is None:
            w.net = open_net(w.board, cfg.get("ifconfig"))
        address = cfg["master"]
        if address is None:
            address = await link_tcp.find_master(w)
        link = link_tcp.TcpLink(w.net, address[0], address[1])
    await link.open()
    return link


def open_net(board, ifconfig=None):
    """The board's socket provider (board.json's "net_driver"): the port's own socket
    module for "builtin" (the unix port, or rp2's WIZNET5K build), the project's WIZnet
    driver for "wiznet" (hardware sockets over SPI; imported only by boards that have it,
    its SPI bus and pins set up by the chip's bring-up, wiznet_up.py, not held once it
    runs). `ifconfig` (ip, netmask, gateway, dns) configures a WIZnet chip statically;
    without it the chip asks DHCP."""
    driver = board.get("net_driver")
    if driver == "builtin":
        import socket

        return socket
    if driver == "wiznet":
        import wiznet_up

        return wiznet_up.open_board(board, ifconfig)
    raise OSError("board " + board["name"] + " has no network driver")


def session(self, w, link):
    """worker.Session's own setup: `self` on link `link` for worker `w`."""
    self.w = w
    self.link = link
    self.max_frame = w.cfg["max_frame"]
    self.writer = w.writer(link.cobs)
    self.engine = engine.Engine(self, w.hello(link.kind), w.cfg["key"], msw_kernel.KERNELS,
                                msw_kernel.WAITS, w.stats, True)
    self.todo = []
    self._res = [None, None, 0]  # msw_kernel.call's answer
    self._look = self._gap = 1  # tasks until the next look at the free heap, and since
    self._free = -1  # the last one, and what was free then (Session.collect())
    self._fns = {}  # kernel name -> msw_kernel.lookup(name), asked once a session
    self._quick = {}  # kernel name -> the magnitudes of a call under QUICK_US (timed())
    self.wake = worker.asyncio.Event()
    self.ended = worker.asyncio.Event()
    self.interrupted = False
    self.reader = None  # the link's StreamReader or Deframer
    self.link_auth = None  # frame MACs (auth.LinkAuth), from WELCOME on


def hello(w, link_kind):
    """The HELLO payload (the engine adds the nonce)."""
    import msw_boot  # (the registry's HELLO half: dropped again, as after the boot)

    about = msw_boot.hello_fields()
    del msw_boot  # (not held while the free heap HELLO reports is measured)
    sys.modules.pop("msw_boot", None)
    sys.modules.pop("engine_join", None)  # (a join that failed kept it)
    gc.collect()
    free = gc.mem_free()  # (before the join's code loads: a joined node does not hold it)
    import engine_join

    cfg = w.cfg
    max_message, operand_cache = engine_join.heap_limits(w.heap_total)
    return engine_join.hello(cfg["node_id"], w.board["name"], FW_VERSION, w.heap_total, free,
                             cfg["max_frame"], cfg["slots"], link_kind, max_message,
                             operand_cache, w.thread is not None, about, cfg["cluster"])


def ended(w, e):
    """Say how a session (or its dial) ended."""
    if isinstance(e, worker.SessionEnd):  # (the engine kept its end reason for the master)
        w.log(("auth: " if e.args[1] else "link down: ") + str(e.args[0]), keep=False)
    elif isinstance(e, OSError):
        w.log("link down: " + str(e))
    else:
        w.log("session failed: " + engine.describe(e), 3)
