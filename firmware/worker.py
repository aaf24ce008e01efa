"""The worker: joins a master over one link and runs the kernels its tasks name.

One Worker lives for the whole boot; it opens a link, joins (HELLO, mutual HMAC auth,
WELCOME), serves tasks until the link fails, then dials again with capped exponential
backoff plus jitter. A Session is one joined link. Inside a session three coroutines
share the event loop:

  reader   link bytes -> frame codec -> dispatch (join steps, TASK, CANCEL, CHUNK, ...)
  runner   takes queued tasks in order, runs the kernel, sends the RESULT
  monitor  sends HEARTBEATs, ends the session when the master falls silent

Every outgoing message goes through one lock, since the frame writer reuses its buffer
(and a chunked message spans several awaited writes). Task-level outcomes (unknown
kernel, kernel error, out of memory, busy, cancelled) are RESULTs with `error` and
`code`, so every TASK gets exactly one RESULT and the master gets its credit back;
frame-level problems are ERROR frames and count in `bad_frames`. Nothing on the wire is
ever executed: a TASK can only name a kernel from kernels.KERNELS.
"""

import gc
import sys
import time

import asyncio
import auth
import board
import frame
import kernels
import links
import msgdefs as M

FW_VERSION = "0.1.0"

JOIN_TIMEOUT_MS = 5000
BACKOFF_MIN_MS = 200
BACKOFF_MAX_MS = 10000
SERIAL_CHUNK = 512
SILENT_BEATS = 3
COLLECT_BELOW = 4  # gc.collect() after a task when less than 1/4 of the heap is free


class SessionEnd(Exception):
    """The session is over; the worker dials again."""


class AuthRefused(SessionEnd):
    pass


def _jitter(ms):
    """A delay in [ms/2, ms): spreads the reconnects of many boards after an outage."""
    half = ms // 2
    return half + (int.from_bytes(auth.nonce(2), "little") % (half + 1))


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


class Stats:
    def __init__(self):
        self.done = 0
        self.bad_frames = 0
        self.heap_min = gc.mem_free()

    def sample_heap(self):
        free = gc.mem_free()
        if free < self.heap_min:
            self.heap_min = free
        return free


class Task:
    __slots__ = ("task_id", "kernel", "args", "cancelled", "handle")

    def __init__(self, task_id, kernel, args):
        self.task_id = task_id
        self.kernel = kernel
        self.args = args
        self.cancelled = False
        self.handle = None  # the asyncio task of a kernel that waits


class Session:
    def __init__(self, worker, link):
        self.w = worker
        self.cfg = worker.cfg
        self.link = link
        self.stats = worker.stats
        self.max_frame = self.cfg["max_frame"]
        self.writer = frame.FrameWriter(self.max_frame, serial=link.cobs)
        self.reassembler = frame.Reassembler(worker.max_message, copy=False)
        self.send_lock = asyncio.Lock()
        self.queue = []
        self.waiting = []
        self.running = None
        self.wake = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason = None
        self.joined = False
        self.node_nonce = auth.nonce(M.NONCE_SIZE)
        self.master_nonce = None
        self.heartbeat_ms = 0
        self.window = 0
        self.last_rx = time.ticks_ms()
        self.tasks = []

    # ---- life cycle ----------------------------------------------------------------

    async def run(self):
        await self.send(M.T_HELLO, self.w.hello(self.node_nonce, self.link.kind))
        self.tasks = [asyncio.create_task(self.read_loop()), asyncio.create_task(self.monitor())]
        try:
            await self.ended.wait()
        finally:
            for t in self.tasks:
                t.cancel()
            self.queue = []
        if isinstance(self.end_reason, BaseException):
            raise self.end_reason
        raise SessionEnd(self.end_reason or "session ended")

    def end(self, reason):
        if self.end_reason is None:
            self.end_reason = reason
        self.ended.set()

    # ---- sending ---------------------------------------------------------------------

    async def send(self, msg_type, payload):
        async with self.send_lock:
            for view in self.writer.frames(msg_type, payload):
                await self.link.write(view)

    async def send_error(self, code, text, ref_seq=None, task_id=None):
        payload = {M.ERROR_CODE: code, M.ERROR_TEXT: text}
        if ref_seq is not None:
            payload[M.ERROR_REF_SEQ] = ref_seq
        if task_id is not None:
            payload[M.ERROR_TASK_ID] = task_id
        await self.send(M.T_ERROR, payload)

    async def send_failure(self, task_id, code, text, elapsed_us=0):
        await self.send(M.T_RESULT, {
            M.RESULT_TASK_ID: task_id, M.RESULT_ERROR: text,
            M.RESULT_ELAPSED_US: elapsed_us, M.RESULT_CODE: code,
        })

    # ---- receiving -------------------------------------------------------------------

    async def read_loop(self):
        try:
            if self.link.cobs:
                await self._read_serial()
            else:
                await self._read_stream()
        except asyncio.CancelledError:
            raise
        except KeyboardInterrupt as e:
            self.end(e)
        except frame.FrameError as e:
            await self._refuse(e)
            self.end("unrecoverable frame: " + e.text)
        except OSError as e:
            self.end("link: " + str(e))
        except SessionEnd as e:
            self.end(e)
        except Exception as e:  # MemoryError, or a bug: drop the link, keep the node
            self.end(e)

    async def _read_stream(self):
        reader = frame.StreamReader(self.max_frame, copy=False)
        link = self.link
        while True:
            n = await link.read_into(reader.want())
            try:
                item = reader.advance(n)
            except frame.FrameError as e:
                if e.fatal:
                    raise
                await self._refuse(e)
                continue
            if item is not None:
                await self.dispatch(item)

    async def _read_serial(self):
        # copy=True: one feed may complete several frames, and in-place views into the
        # deframer's buffer would not survive the next one
        deframer = frame.Deframer(self.max_frame)
        buf = bytearray(SERIAL_CHUNK)
        view = memoryview(buf)
        link = self.link
        while True:
            n = await link.read_into(view)
            for item in deframer.feed(view[:n]):
                if item is frame.BREAK:
                    link.close()
                    raise KeyboardInterrupt
                if isinstance(item, frame.FrameError):
                    self.stats.bad_frames += 1
                    await self._refuse(item, counted=True)
                else:
                    await self.dispatch(item)

    async def _refuse(self, error, counted=False):
        if not counted:
            self.stats.bad_frames += 1
        try:
            await self.send_error(error.code, error.text, error.seq)
        except OSError:
            pass

    async def dispatch(self, item):
        msg_type, flags, seq, payload = item
        self.last_rx = time.ticks_ms()
        in_place = True
        if msg_type == M.T_CHUNK:
            try:
                whole = self.reassembler.add(payload, flags, seq)
            except frame.FrameError as e:
                await self._refuse(e)
                return
            if whole is None:
                return
            msg_type, payload = whole
            in_place = False  # views into the message's own buffer, which the task keeps
        if msg_type == M.T_TASK:
            if in_place:
                payload[M.TASK_ARGS] = _detach(payload[M.TASK_ARGS])
            await self.on_task(payload, seq)
        elif msg_type == M.T_CANCEL:
            await self.on_cancel(payload[M.CANCEL_TASK_ID])
        elif msg_type == M.T_HEARTBEAT:
            pass
        elif msg_type == M.T_AUTH_CHALLENGE:
            await self.on_challenge(payload)
        elif msg_type == M.T_WELCOME:
            self.on_welcome(payload)
        elif msg_type == M.T_ERROR:
            self.on_error(payload)
        elif msg_type == M.T_BYE:
            self.end("master said bye: " + str(payload.get(M.BYE_REASON, "")))
        else:
            self.stats.bad_frames += 1
            await self.send_error(M.E_UNKNOWN_TYPE, "a node does not accept message type "
                                  + str(msg_type), seq)

    # ---- joining ---------------------------------------------------------------------

    async def on_challenge(self, payload):
        if self.joined or self.master_nonce is not None:
            await self.send_error(M.E_BAD_PAYLOAD, "unexpected AUTH_CHALLENGE")
            return
        nonce = bytes(payload[M.AUTH_CHALLENGE_NONCE])
        if len(nonce) != M.NONCE_SIZE:
            await self.send_error(M.E_BAD_PAYLOAD, "master nonce must be 16 bytes")
            raise SessionEnd("bad challenge")
        self.master_nonce = nonce
        mac = auth.node_mac(self.cfg["key"], nonce, self.node_nonce, self.cfg["node_id"])
        await self.send(M.T_AUTH_RESPONSE, {M.AUTH_RESPONSE_MAC: mac})

    def on_welcome(self, payload):
        if self.master_nonce is None or self.joined:
            raise SessionEnd("WELCOME out of order")
        proof = bytes(payload[M.WELCOME_PROOF])
        expected = auth.master_proof(self.cfg["key"], self.node_nonce, self.master_nonce)
        if not auth.equal(proof, expected):
            raise AuthRefused("the master's proof does not verify: wrong key or impostor")
        self.heartbeat_ms = max(100, payload[M.WELCOME_HEARTBEAT_MS])
        self.window = payload[M.WELCOME_WINDOW]
        negotiated = min(self.max_frame, payload[M.WELCOME_MAX_FRAME])
        if negotiated != self.max_frame:
            self.max_frame = negotiated
            self.writer = frame.FrameWriter(negotiated, serial=self.link.cobs)
        self.joined = True
        self.w.joined()
        self.tasks.append(asyncio.create_task(self.run_loop()))

    def on_error(self, payload):
        code = payload[M.ERROR_CODE]
        text = payload[M.ERROR_TEXT]
        if code == M.E_AUTH_FAILED:
            raise AuthRefused("master refused the join: " + text)
        if code in (M.E_BAD_VERSION, M.E_NOT_JOINED):
            raise SessionEnd("master error " + str(code) + ": " + text)

    # ---- tasks -----------------------------------------------------------------------

    async def on_task(self, payload, seq):
        task_id = payload[M.TASK_TASK_ID]
        if not self.joined:
            await self.send_error(M.E_NOT_JOINED, "TASK before WELCOME", seq, task_id)
            return
        if self.busy() >= self.cfg["slots"]:
            await self.send_failure(task_id, M.E_BUSY, "all slots taken")
            return
        name = payload[M.TASK_KERNEL]
        if name not in kernels.KERNELS:
            await self.send_failure(task_id, M.E_UNKNOWN_KERNEL, "no kernel named " + name)
            return
        bad = kernels.check(name, payload[M.TASK_ARGS])
        if bad is not None:
            await self.send_failure(task_id, M.E_BAD_ARGS, bad)
            return
        self.queue.append(Task(task_id, name, payload[M.TASK_ARGS]))
        self.wake.set()

    async def on_cancel(self, task_id):
        for i in range(len(self.queue)):
            if self.queue[i].task_id == task_id:
                del self.queue[i]
                await self.send_failure(task_id, M.E_CANCELLED, "cancelled before it ran")
                return
        for task in self.waiting:
            if task.task_id == task_id and not task.cancelled:
                task.cancelled = True
                task.handle.cancel()
        if self.running is not None and self.running.task_id == task_id:
            self.running.cancelled = True

    def busy(self):
        return len(self.queue) + len(self.waiting) + (1 if self.running else 0)

    async def run_loop(self):
        try:
            while True:
                while not self.queue:
                    self.wake.clear()
                    await self.wake.wait()
                task = self.queue.pop(0)
                if task.kernel in kernels.WAITS:
                    self.waiting.append(task)
                    task.handle = asyncio.create_task(self.execute(task))
                    self.tasks.append(task.handle)
                    continue
                self.running = task
                try:
                    await self.execute(task)
                finally:
                    self.running = None
        except asyncio.CancelledError:
            raise
        except OSError as e:
            self.end("link: " + str(e))
        except Exception as e:
            self.end(e)

    async def execute(self, task):
        fn, native = kernels.lookup(task.kernel)
        start = time.ticks_us()
        value = None
        failure = None
        try:
            value = fn(*task.args)
            if task.kernel in kernels.WAITS:
                try:
                    await asyncio.sleep_ms(value)
                except asyncio.CancelledError:
                    if not task.cancelled:
                        raise
        except MemoryError:
            value = None
            gc.collect()
            failure = (M.E_NO_MEMORY, "out of heap running " + task.kernel)
        except (TypeError, ValueError) as e:  # the arguments: retrying elsewhere cannot help
            failure = (M.E_BAD_ARGS, type(e).__name__ + ": " + str(e))
        except Exception as e:
            failure = (M.E_KERNEL_FAILED, type(e).__name__ + ": " + str(e))
        elapsed = time.ticks_diff(time.ticks_us(), start)
        # The link was not read while the kernel held the loop: what the master sent in
        # that time is still waiting, so that time does not count as the master's silence.
        self.last_rx = time.ticks_ms()
        task.args = None
        if task in self.waiting:
            self.waiting.remove(task)
            self.tasks.remove(task.handle)
        free = self.stats.sample_heap()
        if task.cancelled:
            await self.send_failure(task.task_id, M.E_CANCELLED, "cancelled while running",
                                    elapsed)
        elif failure is not None:
            await self.send_failure(task.task_id, failure[0], failure[1], elapsed)
        else:
            result = {M.RESULT_TASK_ID: task.task_id, M.RESULT_VALUE: value,
                      M.RESULT_ELAPSED_US: elapsed, M.RESULT_NATIVE: native}
            try:
                await self.send(M.T_RESULT, result)
            except frame.FrameError as e:
                await self.send_failure(task.task_id, e.code, "result not sendable: " + e.text,
                                        elapsed)
            except MemoryError:
                value = result = None
                gc.collect()
                await self.send_failure(task.task_id, M.E_NO_MEMORY, "no heap for the result",
                                        elapsed)
        self.stats.done += 1
        value = None
        if free < self.w.heap_total // COLLECT_BELOW:
            gc.collect()

    # ---- liveness --------------------------------------------------------------------

    async def monitor(self):
        started = time.ticks_ms()
        while not self.joined:
            await asyncio.sleep_ms(50)
            if time.ticks_diff(time.ticks_ms(), started) > JOIN_TIMEOUT_MS:
                self.end("no WELCOME within " + str(JOIN_TIMEOUT_MS) + " ms")
                return
        while True:
            await asyncio.sleep_ms(self.heartbeat_ms)
            silent = time.ticks_diff(time.ticks_ms(), self.last_rx)
            if silent > SILENT_BEATS * self.heartbeat_ms:
                self.end("master silent for " + str(silent) + " ms")
                return
            stats = self.stats
            try:
                maintain = getattr(self.w.net, "maintain", None)  # WIZnet: DHCP renewal
                if maintain is not None:
                    maintain()
                await self.send(M.T_HEARTBEAT, {
                    M.HEARTBEAT_UPTIME_MS: board.uptime_ms(),
                    M.HEARTBEAT_HEAP_FREE: stats.sample_heap(),
                    M.HEARTBEAT_QUEUE: self.busy(),
                    M.HEARTBEAT_DONE: stats.done,
                    M.HEARTBEAT_BAD_FRAMES: stats.bad_frames,
                    M.HEARTBEAT_HEAP_MIN: stats.heap_min,
                })
            except OSError as e:
                self.end("link: " + str(e))
                return


class Worker:
    def __init__(self, board_def, cfg, net=None, serial=None):
        self.board = board_def
        self.cfg = cfg
        self.net = net
        self.serial = serial
        self.stats = Stats()
        self.heap_total = board.heap_total()
        self.max_message = min(self.heap_total // 3, 1 << 20)
        self.backoff_ms = BACKOFF_MIN_MS
        self.sessions = 0

    def hello(self, nonce, link_kind):
        gc.collect()
        msg = {
            M.HELLO_NODE_ID: self.cfg["node_id"],
            M.HELLO_BOARD: self.board["name"],
            M.HELLO_FW_VERSION: FW_VERSION,
            M.HELLO_PROTO_VERSION: M.PROTOCOL_VERSION,
            M.HELLO_HEAP_TOTAL: self.heap_total,
            M.HELLO_HEAP_FREE: self.stats.sample_heap(),
            M.HELLO_MAX_FRAME: self.cfg["max_frame"],
            M.HELLO_SLOTS: self.cfg["slots"],
            M.HELLO_NONCE: nonce,
            M.HELLO_LINK: link_kind,
            M.HELLO_MAX_MESSAGE: self.max_message,
            M.HELLO_CLUSTER: self.cfg["cluster"],
        }
        about = kernels.hello_fields()
        msg[M.HELLO_KERNELS] = about["kernels"]
        msg[M.HELLO_KERNEL_HASHES] = about["kernel_hashes"]
        if "native_arch" in about:
            msg[M.HELLO_NATIVE_ARCH] = about["native_arch"]
            msg[M.HELLO_NATIVE_KERNELS] = about["native_kernels"]
        return msg

    def log(self, text):
        """A line on stderr, except on a serial link, where the console carries frames."""
        if self.cfg["link"] != "serial":
            sys.stderr.write("microswarm: " + text + "\n")

    def joined(self):
        self.backoff_ms = BACKOFF_MIN_MS
        self.sessions += 1

    async def open_link(self):
        cfg = self.cfg
        if cfg["link"] == "serial":
            link = links.SerialLink() if self.serial is None else self.serial
        else:
            if self.net is None:
                self.net = board.open_net(self.board, cfg.get("ifconfig"))
            address = cfg["master"]
            if address is None:
                address = await self.discover()
            link = links.TcpLink(self.net, address[0], address[1])
        await link.open()
        return link

    async def discover(self):
        cfg = self.cfg
        writer = frame.FrameWriter(256)
        request = bytes(writer.frame(M.T_DISCOVER, {
            M.DISCOVER_CLUSTER: cfg["cluster"], M.DISCOVER_NODE_ID: cfg["node_id"]}))

        told = []

        def parse(datagram):
            try:
                msg_type, _flags, _seq, payload = frame.decode(datagram, 1024)
            except frame.FrameError:
                return None
            if msg_type != M.T_ANNOUNCE:
                return None
            name = payload[M.ANNOUNCE_CLUSTER]
            if name != cfg["cluster"]:
                if name not in told:  # a master of another cluster: say so once
                    told.append(name)
                    self.log("discovery: the master at " + payload[M.ANNOUNCE_HOST] + " serves "
                             "cluster '" + name + "', this node is configured for cluster '"
                             + cfg["cluster"] + "'")
                return None
            return payload[M.ANNOUNCE_HOST], payload[M.ANNOUNCE_PORT]

        return await links.discover(self.net, cfg["discovery_host"], cfg["discovery_port"],
                                    request, parse)

    async def run(self):
        while True:
            link = None
            try:
                link = await self.open_link()
                await Session(self, link).run()
            except AuthRefused as e:
                self.log("auth: " + str(e))
            except (SessionEnd, OSError) as e:
                self.log("link down: " + str(e))
            except Exception as e:
                self.log("session failed: " + type(e).__name__ + ": " + str(e))
            finally:
                if link is not None:
                    link.close()
                gc.collect()
            await asyncio.sleep_ms(_jitter(self.backoff_ms))
            self.backoff_ms = min(BACKOFF_MAX_MS, self.backoff_ms * 2)


def main():
    import config

    try:
        board_def = config.load_board()
        cfg = config.load_config(board_def)
    except config.ConfigError as e:
        print("microswarm: " + str(e))
        return
    worker = Worker(board_def, cfg)
    try:
        asyncio.run(worker.run())
    except KeyboardInterrupt:
        if cfg["link"] != "serial":
            print("microswarm: stopped")
    finally:
        if cfg["link"] == "serial":
            links.console_to_repl()
