"""The worker: the node engine (engine.py) driven by asyncio links and a kernel runner.

One Worker lives for the whole boot; it opens a link, runs a Session on it until the
session ends, then dials again with capped exponential backoff plus jitter. What a node
says and answers is decided by the engine; this file moves bytes and runs kernels.
"""

# A Session runs three coroutines on one link:
#   reader   link bytes -> frame codec -> engine.receive / engine.bad_frame
#   runner   runs the kernels the engine starts; engine.finished answers the RESULT
#   clock    engine.on_timer at engine.next_deadline(): heartbeats, join and silence
# The engine sends through Session.send, which frames a message and puts it on the link at
# once (no lock: every frame is queued whole and in order); the coroutine that called
# the engine then drains the link if bytes wait (only then: an await allocates).
#
# Kernels run on a second thread (worker_thread.py) where the port has one without a global
# interpreter lock (the unix port, rp2's second core): the link keeps being read and the
# heartbeats carry the running task (HELLO says threads=true). Elsewhere, for the INLINE
# kernels that only hand back their argument, and for a call of a kernel whose call with
# the same magnitudes took under QUICK_US on this node (worker_thread.on_loop: the thread's
# round trip, two context switches, costs more than such a call), they run on the event loop;
# the INLINE ones, and every one but a wait where there is no kernel thread, right after
# the engine call that started them (Session.run_inline: no coroutine per task). Nothing
# on the wire is ever executed: a TASK can only name a kernel from msw_kernel.KERNELS (the
# registry; kernels.py itself loads on the first task that names one of its kernels).

# A link (the worker imports the module of the link a node uses: link_serial.SerialLink or
# link_tcp.TcpLink; a TCP node never loads the serial link's code, nor a serial node the
# TCP link's) offers:
#
#   await link.open()                 connect (raises OSError when it cannot)
#   n = await link.read_into(view)    some bytes into `view`; raises OSError at EOF
#   n = link.read_now(view)           the same without waiting: None when none are there yet
#                                     (a frame already in costs no coroutine and no poll)
#   link.put(data)                    queue `data` (copied when it cannot leave at once)
#   link.pending() -> bool            bytes queued by put() wait for drain()
#   await link.drain()                send what put() queued, in order
#   link.close()
#
# link_tcp.TcpLink dials the master over a `net` object: MicroPython's socket module or a
# driver object with the same calls (socket(), getaddrinfo(); sockets that connect, read into
# a buffer, write and are pollable through the stream ioctl). Frames travel back to back.
# link_tcp.find_master() finds the master with a UDP DISCOVER beacon answered by ANNOUNCE.
#
# link_serial.SerialLink speaks COBS frames on the REPL's own stdin/stdout. From the first
# time it opens until the worker leaves, Ctrl-C is turned off (`micropython.kbd_intr(-1)`),
# between sessions too: every COBS frame begins with a code byte, often 0x03, and a master
# that speaks while the worker waits to dial again must not interrupt it. 0x03 is data; the
# way back to the REPL is the frame codec's break rule (b"\r\x03" or b"\x03\x03" at the
# start of a frame, what mpremote sends, and something no v1 frame can begin with). On a
# break, and whenever the worker stops, `link_serial.console_to_repl()` turns Ctrl-C back on
# and the board drops to its REPL.

import gc
import sys
import time

import asyncio
import auth
import board
import engine
import msw_kernel
from micropython import const

# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_NONCE_SIZE = const(16)
_T_TASK = const(5)
_TASK_ARGS = const(2)
# END GENERATED

# Builtins named per frame, bound in this module's own table: MicroPython looks a name up
# there before the builtins, and a table grows only once full, so a miss probes every
# slot (0.3-0.5 us a name in the unix VM; docs/firmware.md, "Benchmark").
len = len
isinstance = isinstance
range = range

_TICK_MS = const(100)  # longest the clock sleeps before it asks the engine again
_COLLECT_BELOW = const(4)  # gc.collect() after a task when less than 1/4 of the heap is free
_LOOK_MAX = const(256)  # most tasks between two looks at the free heap (Session.collect)
INLINE = ("echo",)  # kernels that only hand back their argument: no thread round trip


class SessionEnd(Exception):
    """The session is over; the worker dials again. args: (the engine's end reason, whether
    the master refused the node's key)."""


def _detach(value):
    """`value` with every memoryview replaced by a bytes copy. Frames are decoded in place
    (byte strings are views into the receive buffer); a task that outlives the next read
    must own its bytes."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, list):
        for i in range(len(value)):
            value[i] = _detach(value[i])
    elif isinstance(value, dict):
        for k in value:
            value[k] = _detach(value[k])
    return value


def _up():
    # the worker's bring-up (worker_up.py): the boot, a dial and a session's setup; dropped
    # before the session runs (Worker.run)
    import worker_up

    return worker_up


class Session:
    def __init__(self, worker, link):
        _up().session(self, worker, link)

    # ---- what the engine calls -------------------------------------------------------

    def send(self, msg_type, payload):
        link = self.link
        limit = self.engine.peer_max_message
        view = self.writer.message(msg_type, payload, limit)
        if view is not None:  # one frame: no generator
            link.put(view)
            return
        for view in self.writer.frames(msg_type, payload, limit):
            link.put(view)

    def run(self, task):
        self.todo.append(task)
        if not self.here(task):  # those run in run_inline(), after the engine returns
            self.wake.set()

    def here(self, task):
        """Does `task` run in run_inline(), right after the engine call that started it?
        The INLINE kernels do; without a kernel thread every kernel but a wait does (it
        would hold the loop all the same, in the runner's coroutine after a wake-up)."""
        return task.kernel in INLINE or (self.w.thread is None and not task.waits)

    def cancel(self, task):
        if task.handle is not None:
            task.handle.cancel()

    def close(self, reason):
        self.ended.set()

    def challenged(self, key, master_nonce, node_nonce):
        # (key None: frame MACs off again, for the refusal of an impostor's WELCOME)
        self.link_auth = None if key is None else auth.LinkAuth(key, master_nonce, node_nonce)
        self.writer.auth = self.link_auth
        if self.reader is not None:
            self.reader.auth = self.link_auth

    def on_joined(self):
        self.w.joined()
        # the master's limit, when lower than ours: the same writer (one seq and stream
        # numbering per link) writes smaller frames from the same buffer
        self.max_frame = self.writer.max_frame = self.engine.max_frame

    def heap_free(self):
        return gc.mem_free()

    # ---- life cycle ------------------------------------------------------------------

    async def run_session(self):
        eng = self.engine
        coros = ()
        try:
            eng.start(board.uptime_ms(), auth.nonce(_NONCE_SIZE))
            if self.link.pending():
                await self.link.drain()
            coros = (asyncio.create_task(self.read_loop()), asyncio.create_task(self.clock()),
                     asyncio.create_task(self.run_loop()))
            await self.ended.wait()
        except Exception as e:
            self.fail(e)
        finally:
            for t in coros:
                t.cancel()
            for task in eng.running:
                if task.handle is not None:
                    task.handle.cancel()
            self.todo = []
        if self.interrupted:
            raise KeyboardInterrupt
        raise SessionEnd(eng.end_reason, eng.refused)

    def fail(self, e):
        if isinstance(e, KeyboardInterrupt):
            self.interrupted = True
            reason = "interrupted"
        elif isinstance(e, OSError):
            reason = "link: " + str(e)
        else:  # MemoryError, or a bug: drop the link, keep the node
            reason = engine.describe(e)
        self.engine.end(reason)
        self.ended.set()

    # ---- reader ----------------------------------------------------------------------

    async def read_loop(self):
        try:
            # each link's reader is in the link's module (imported already)
            if self.link.cobs:
                import link_serial as kind
            else:
                import link_tcp as kind
            await kind.read_frames(self)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self.fail(e)

    def dispatch(self, item, now):
        msg_type, flags, seq, payload = item
        if msg_type == _T_TASK:
            payload[_TASK_ARGS] = _detach(payload[_TASK_ARGS])
            self.engine.receive(msg_type, flags, seq, payload, now)
            # the TCP reader decodes every TASK into the same dict: it keeps no arguments
            # alive until the next one (a refused or waiting task's are the engine's, or
            # nobody's)
            payload[_TASK_ARGS] = None
        else:
            self.engine.receive(msg_type, flags, seq, payload, now)
        self.run_inline()

    # ---- kernels ---------------------------------------------------------------------

    def lookup(self, task):
        """The function that runs `task`'s kernel; sets task.native. (msw_kernel.lookup's
        answer is kept: a tuple per task otherwise.)"""
        fns = self._fns
        found = fns.get(task.kernel)
        if found is None:
            found = fns[task.kernel] = msw_kernel.lookup(task.kernel)
        task.native = found[1]
        return found[0]

    def finish(self, task, value, error, elapsed, now):
        """engine.finished, then the list the task's arguments were decoded into goes back
        to the reader (no list per TASK)."""
        args = task.args
        self.engine.finished(task, value, error, elapsed, now)
        if task.args is None and args is not None:  # the engine is done with them
            self.reader.spare(args)

    def run_inline(self):
        """Run the tasks at the head of the queue that run here (here()), on the spot:
        called right after an engine call that may have started tasks. No runner wake-up,
        no await: such a task costs no coroutine."""
        todo = self.todo
        ran = False
        while todo and self.here(todo[0]):
            task = todo.pop(0)
            out = msw_kernel.call(self.lookup(task), task.args, self._res, time.ticks_us,
                                  time.ticks_diff)
            self.finish(task, out[0], out[1], out[2], board.uptime_ms())
            out[0] = out[1] = None
            ran = True
        if ran:
            self.collect()

    def collect(self):
        """After a task: gc.collect() when less than 1/_COLLECT_BELOW of the heap is free.
        gc.mem_free() walks the heap's whole allocation table (the unix board's 2 MB: ~0.3 ms
        in the VM, more than the rest of a native task), so the next look comes when half
        of the room left above that line could be gone at the rate the tasks since the last
        look allocated (at most _LOOK_MAX tasks later). A task that allocates more than that
        only moves the collection to the allocation that finds no room."""
        self._look -= 1
        if self._look > 0:
            return
        low = self.w.heap_total // _COLLECT_BELOW
        free = gc.mem_free()
        used = self._free - free  # since the last look (negative: a collection ran)
        if free < low:
            gc.collect()
            free = gc.mem_free()
        self._free = free
        if used > 0:
            gap = (free - low) * self._gap // (2 * used)
        else:  # no rate known after a collection: look again after the next task
            gap = _LOOK_MAX if used == 0 else 1
        self._gap = self._look = 1 if gap < 1 else (_LOOK_MAX if gap > _LOOK_MAX else gap)

    async def run_loop(self):
        thread = self.w.thread
        if thread is not None:
            import worker_thread as wt
        try:
            while True:
                while not self.todo:
                    self.wake.clear()
                    await self.wake.wait()
                task = self.todo.pop(0)
                fn = self.lookup(task)
                if task.waits:  # (its coroutine's code loads with the first such task)
                    try:
                        import worker_wait
                    except MemoryError as e:  # no heap for it: the task fails, not the session
                        self.finish(task, None, e, 0, board.uptime_ms())
                        continue
                    asyncio.create_task(worker_wait.wait(self, task, fn))
                    continue
                here = thread is None or task.kernel in INLINE
                like = not here and wt.on_loop(self, task)
                if here or like:
                    value, error, elapsed = msw_kernel.call(fn, task.args, self._res,
                                                            time.ticks_us, time.ticks_diff)
                    self._res[0] = self._res[1] = None
                else:
                    value, error, elapsed = await thread.run(fn, task.args)
                if not here:
                    wt.timed(self, task, elapsed, like)
                if isinstance(error, MemoryError):
                    gc.collect()
                self.finish(task, value, error, elapsed, board.uptime_ms())
                value = error = None
                self.run_inline()
                if self.link.pending():
                    await self.link.drain()
                self.collect()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.fail(e)

    # ---- clock -----------------------------------------------------------------------

    async def clock(self):
        eng = self.engine
        try:
            while True:
                deadline = eng.next_deadline()
                if deadline is None:
                    return
                wait = deadline - board.uptime_ms()
                if wait > 0:
                    await asyncio.sleep_ms(wait if wait < _TICK_MS else _TICK_MS)
                    continue
                maintain = getattr(self.w.net, "maintain", None)  # WIZnet: DHCP renewal
                if maintain is not None:
                    maintain()
                eng.on_timer(board.uptime_ms())
                if self.link.pending():
                    await self.link.drain()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.fail(e)


class Worker:
    """One for the boot: made by worker_up.boot() (its setup is not held), with board,
    cfg, net, heap_total, stats, thread, backoff, sessions, _frames (cobs -> the frame
    reader and writer, kept for the boot), serial_buf and held (TCP: frame.Reuse of the
    buffer the link holds answers in)."""

    def reader(self, cobs):
        """This boot's frame reader for a link, reset for a new session."""
        reader = self._frames[cobs][0]
        reader.reset()
        reader.auth = None
        return reader

    def writer(self, cobs):
        """This boot's frame writer for a link, reset for a new session (seq and stream
        numbers start at 0, no MAC, the configured max_frame)."""
        writer = self._frames[cobs][1]
        writer.seq = writer.stream = 0
        writer.auth = None
        writer.max_frame = self.cfg["max_frame"]
        return writer

    def hello(self, link_kind):
        """The HELLO payload (the engine adds the nonce)."""
        return _up().hello(self, link_kind)

    def log(self, text, level=2, keep=True):
        """A line on stderr, except on a serial link, where the console carries frames; and
        (keep) a record for the master's log, sent after the next WELCOME (engine_log.py).
        level: LogLevel (2 WARNING, 3 ERROR)."""
        if self.cfg["link"] != "serial":
            sys.stderr.write("microswarm: " + text + "\n")
        if keep:
            engine._log().note(self.stats, level, text)

    def joined(self):
        self.backoff = engine.BACKOFF_MIN_MS
        self.sessions += 1

    async def run(self):
        while True:
            link = None
            try:
                up = _up()
                link = await up.open_link(self)
                session = Session(self, link)
                up = None
                sys.modules.pop("worker_up", None)  # (the next dial loads it again)
                gc.collect()  # what dialling left: the session's objects go in one place
                await session.run_session()
            except KeyboardInterrupt:
                raise
            except Exception as e:  # SessionEnd, OSError, or a bug
                _up().ended(self, e)
            finally:
                session = None
                if link is not None:
                    link.close()
                gc.collect()
            # a random wait spreads the reconnects of many boards after an outage
            fraction = int.from_bytes(auth.nonce(2), "little") / 65535
            wait, self.backoff = engine.backoff(self.backoff, fraction)
            await asyncio.sleep_ms(int(wait))


def main():
    w = _up().boot()
    sys.modules.pop("worker_up", None)
    if w is None:
        return
    serial = w.cfg["link"] == "serial"
    try:
        asyncio.run(w.run())
    except KeyboardInterrupt:
        w.log("stopped", keep=False)  # (on a TCP node's console)
    finally:
        if serial:
            import link_serial

            link_serial.console_to_repl()
