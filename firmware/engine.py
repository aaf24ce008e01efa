"""The node's protocol engine: one place where a node's behaviour on the wire is defined.

Sans-IO, and unchanged on MicroPython boards, in the unix-port VM and in CPython (the
host's in-process, local and simulated nodes import it as microswarm.firmware.engine).
docs/engine.md describes its states and the liveness rules; the details are comments
below (on a board a long docstring costs heap while the module compiles).
"""

# The engine takes decoded frames and events, and answers through the `io` object its
# driver gives it; it owns no socket, no thread, no clock:
#
#   Engine(io, hello, key, known=None, waits=(), stats=None, recycle=False)
#       hello: the HELLO payload without its nonce (msgdefs keys); the engine reads its
#           node_id, slots, kernels, threads, max_message and operand_cache (bytes for
#           shared operands, SPEC.md section 6: operands.py, loaded lazily). known: a
#           container of the kernel names it runs (default hello's list). waits:
#           kernels that wait instead of computing (sleep_ms): they start beside a
#           running kernel. recycle=True: the driver keeps no Task after finished() and no
#           payload after io.send() returns, so the engine reuses them (up to `slots` Task
#           records, one RESULT dict): a task then allocates nothing in the engine.
#   .start(now, nonce)                     send HELLO, start the join clock
#   .receive(msg_type, flags, seq, payload, now)   one decoded frame from the master
#   .bad_frame(code, text, seq, fatal, now, task_id=None)   one frame the codec refused
#   .finished(task, value, error, elapsed_us, now)  the kernel of `task` returned `value`
#           or raised `error` (an exception); the engine answers the RESULT
#   .next_deadline() -> ms or None;  .on_timer(now)   heartbeats, join and silence clocks
#   .end_reason: None while the session lives; .refused: True when auth failed
#   .last_rx = now   the driver sets it whenever link bytes arrive, a frame whole or not:
#           a long frame still coming in is not the master's silence
#
#   io.send(msg_type, payload)   frame and queue one message. May raise the codec's
#       FrameError (.code) or MemoryError: the engine maps both for RESULTs.
#   io.run(task)                 start task's kernel; answer later with engine.finished
#       (the engine has checked its arguments against the kernel's declared kinds)
#   io.cancel(task)              the master cancelled a running task (a waiting kernel can
#       stop early; a computing one cannot and finishes first)
#   io.close(reason)             the session is over (called once)
#   io.on_joined()               the master's proof verified; the link is up
#   io.heap_free() -> int        free heap now, for HEARTBEAT (None: not reported)
#
# Times are milliseconds on the driver's monotonic clock (ints on a board, floats allowed
# on the host). Every TASK gets exactly one RESULT or one ERROR carrying its task id.

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_T_HELLO = const(1)
_T_WELCOME = const(2)
_T_AUTH_CHALLENGE = const(3)
_T_TASK = const(5)
_T_RESULT = const(6)
_T_CANCEL = const(7)
_T_HEARTBEAT = const(8)
_T_ERROR = const(10)
_T_BYE = const(11)
_T_CHUNK = const(12)
_T_PUT = const(15)
_E_BAD_VERSION = const(2)
_E_UNKNOWN_KERNEL = const(9)
_E_KERNEL_FAILED = const(10)
_E_NO_MEMORY = const(11)
_E_AUTH_FAILED = const(12)
_E_NOT_JOINED = const(13)
_E_BUSY = const(14)
_E_CANCELLED = const(15)
_E_BAD_ARGS = const(16)
_E_UNEXPECTED = const(19)
_E_MISSING_OPERAND = const(21)
_HELLO_NONCE = const(10)
_TASK_TASK_ID = const(0)
_TASK_KERNEL = const(1)
_TASK_ARGS = const(2)
_TASK_REFS = const(4)
_RESULT_TASK_ID = const(0)
_RESULT_VALUE = const(1)
_RESULT_ERROR = const(2)
_RESULT_ELAPSED_US = const(3)
_RESULT_NATIVE = const(4)
_RESULT_CODE = const(5)
_CANCEL_TASK_ID = const(0)
_HEARTBEAT_UPTIME_MS = const(0)
_HEARTBEAT_HEAP_FREE = const(1)
_HEARTBEAT_QUEUE = const(2)
_HEARTBEAT_DONE = const(3)
_HEARTBEAT_BAD_FRAMES = const(4)
_HEARTBEAT_HEAP_MIN = const(5)
_HEARTBEAT_RUNNING = const(6)
_HEARTBEAT_OPERANDS = const(7)
_ERROR_CODE = const(0)
_ERROR_TEXT = const(1)
_ERROR_REF_SEQ = const(2)
_ERROR_TASK_ID = const(3)
_BYE_REASON = const(0)
# END GENERATED
# BEGIN GENERATED: text numbers (tools/gen_protocol.py, from msw_texts.py)
_TX_ENGINE_NOT_ACCEPTED = const(48)
_TX_ENGINE_BYE = const(49)
_TX_ENGINE_UNRECOVERABLE = const(50)
_TX_ENGINE_REFUSED = const(51)
_TX_ENGINE_MASTER_ERROR = const(52)
_TX_ENGINE_PREVIOUS = const(53)
_TX_ENGINE_NO_WELCOME = const(54)
_TX_ENGINE_SILENT = const(55)
_TX_ENGINE_TASK_EARLY = const(56)
_TX_ENGINE_PUT_EARLY = const(57)
_TX_ENGINE_CHUNK_EARLY = const(58)
_TX_ENGINE_SLOTS = const(59)
_TX_ENGINE_NO_KERNEL = const(60)
_TX_ENGINE_NO_OPERANDS = const(61)
_TX_ENGINE_NO_HEAP_LOAD = const(62)
_TX_ENGINE_BAD_ARGS = const(63)
_TX_ENGINE_CANCELLED_RUNNING = const(66)
_TX_ENGINE_NO_HEAP_RESULT = const(67)
_TX_ENGINE_NOT_SENDABLE = const(68)
# END GENERATED

try:
    import msw_kernel  # the kernel registry: each kernel's declared argument kinds
except ImportError:
    from microswarm.firmware import msw_kernel
try:
    import cbor  # (its text(): the engine's error texts by number, msw_texts.py)
except ImportError:
    from microswarm.firmware import cbor

# Builtins named per frame, bound in this module's own table: MicroPython looks a name up
# there before the builtins, and a table grows only once full, so a miss probes every
# slot (0.3-0.5 us a name in the unix VM; docs/firmware.md, "Benchmark").
len = len
isinstance = isinstance

_JOIN_TIMEOUT_MS = const(5000)
_SILENT_BEATS = const(3)
# A node dials again after a delay in [b/2, b] (random; backoff()), b doubling from
# BACKOFF_MIN_MS after each failed session up to _BACKOFF_MAX_MS, back to the minimum after
# a join.
BACKOFF_MIN_MS = const(200)
_BACKOFF_MAX_MS = const(10000)
MIN_HEARTBEAT_MS = const(10)

# states
HELLO_SENT = const(0)  # waiting for AUTH_CHALLENGE
AUTH_SENT = const(1)  # waiting for WELCOME
JOINED = const(2)
_CLOSED = const(3)


def _log():
    try:
        import engine_log
    except ImportError:
        from microswarm.firmware import engine_log
    return engine_log


def error_code(error):
    """The ErrorCode for an exception a kernel raised: no heap, a deterministic argument
    error (the kernel's own checks raise TypeError/ValueError), anything else."""
    if isinstance(error, MemoryError):
        return _E_NO_MEMORY
    if isinstance(error, (TypeError, ValueError)):
        return _E_BAD_ARGS
    return _E_KERNEL_FAILED


def describe(error):
    return type(error).__name__ + ": " + str(error)


def _chunks():
    try:
        import engine_chunks
    except ImportError:
        from microswarm.firmware import engine_chunks
    return engine_chunks


def _join():
    # the join's code (engine_join.py): loaded from the HELLO to the WELCOME
    try:
        import engine_join
    except ImportError:
        from microswarm.firmware import engine_join
    return engine_join


def backoff(b, fraction):
    """When a node dials again after a session ends (every node kind: one rule): for the
    backoff `b` in ms (BACKOFF_MIN_MS at boot and after a join), (the wait before the next
    dial, in [b/2, b] for `fraction` in [0, 1]; the next backoff, b doubled up to
    _BACKOFF_MAX_MS). A function of an int, not an object: a board holds no class for it.
    (Resident, not in engine_join: a session that ended for want of heap must still be
    able to wait and dial again.)"""
    return b * (0.5 + 0.5 * fraction), (b * 2 if b * 2 < _BACKOFF_MAX_MS else _BACKOFF_MAX_MS)


class Stats:
    """What a node counts over its whole boot, across sessions."""

    def __init__(self, boot_ms=0, heap_min=None):
        self.boot_ms = boot_ms
        self.done = 0
        self.bad_frames = 0
        self.heap_min = heap_min
        # the node's own log (engine_log.py): records waiting, dropped, the rate limit
        self.logs = None
        self.log_dropped = 0
        self.log_tokens = 8  # engine_log.BURST
        self.log_at = boot_ms


class Task:
    __slots__ = ("task_id", "kernel", "args", "waits", "started", "cancelled", "native",
                 "handle")

    def __init__(self, task_id, kernel, args, waits):
        self.task_id = task_id
        self.kernel = kernel
        self.args = args
        self.waits = waits
        self.started = -1  # ms when its kernel started; -1 while queued
        self.cancelled = False
        self.native = None  # the runner sets True/False when it knows
        self.handle = None  # the runner's own


class Engine:
    def __init__(self, io, hello, key, known=None, waits=(), stats=None, recycle=False):
        _join().init(self, io, hello, key, known, waits, stats, recycle)  # once a session

    # ---- life cycle ------------------------------------------------------------------

    def start(self, now, nonce):
        self.node_nonce = nonce
        self.join_deadline = now + _JOIN_TIMEOUT_MS
        self.last_rx = now
        hello = self.hello
        self.hello = None  # sent: its kernel lists need not stay for the whole session
        hello[_HELLO_NONCE] = nonce
        self.io.send(_T_HELLO, hello)

    def end(self, reason):
        if self.state == _CLOSED:
            return
        self.state = _CLOSED
        reason = cbor.text(reason)  # (a text, or a text's number in msw_texts.py)
        self.end_reason = reason
        # kept for the master: sent after the next WELCOME (a serial board has no console)
        _log().note(self.stats, 2, cbor.text((_TX_ENGINE_PREVIOUS, reason)))  # WARNING
        self.queue = []
        if self.ops is not None:
            self.ops.waiting = []
        self.io.close(reason)

    def busy(self):
        ops = self.ops
        return len(self.queue) + len(self.running) + (len(ops.waiting) if ops is not None else 0)

    # ---- receiving -------------------------------------------------------------------

    def receive(self, msg_type, flags, seq, payload, now):
        if self.state == _CLOSED:
            return
        self.last_rx = now
        if msg_type == _T_TASK:
            self._task(payload, seq, now)
        elif msg_type == _T_HEARTBEAT:
            pass
        elif msg_type == _T_CANCEL:
            try:  # (its code loads with the session's first CANCEL)
                import engine_cancel
            except ImportError:
                from microswarm.firmware import engine_cancel
            engine_cancel.cancel(self, payload[_CANCEL_TASK_ID])
        elif msg_type == _T_CHUNK:
            if self.state != JOINED:
                self._send_error(_E_NOT_JOINED, _TX_ENGINE_CHUNK_EARLY, seq)
            else:  # (the reassembly's code loads on the first CHUNK: most tasks need none)
                _chunks().receive(self, payload, flags, seq, now)
        elif msg_type == _T_PUT:
            self._put(payload, seq, now)
        elif msg_type == _T_AUTH_CHALLENGE:
            _join().challenge(self, payload, seq)
        elif msg_type == _T_WELCOME:
            _join().welcome(self, payload, seq, now)
        elif msg_type == _T_ERROR:
            self._error(payload)
        elif msg_type == _T_BYE:
            self.end((_TX_ENGINE_BYE, payload.get(_BYE_REASON, "")))
        else:
            self.stats.bad_frames += 1
            self._send_error(_E_UNEXPECTED, (_TX_ENGINE_NOT_ACCEPTED, msg_type), seq)

    def bad_frame(self, code, text, seq, fatal, now, task_id=None):
        """A frame the codec refused: answered with an ERROR, counted; a fatal one (the
        byte stream cannot be trusted past it) ends the session."""
        if self.state == _CLOSED:
            return
        self.stats.bad_frames += 1
        self._send_error(code, text, seq, task_id)
        if fatal:
            self.end((_TX_ENGINE_UNRECOVERABLE, text))

    def _send_error(self, code, text, seq=None, task_id=None):
        payload = {_ERROR_CODE: code, _ERROR_TEXT: cbor.text(text)}
        if seq is not None:
            payload[_ERROR_REF_SEQ] = seq
        if task_id is not None:
            payload[_ERROR_TASK_ID] = task_id
        self.io.send(_T_ERROR, payload)

    def _error(self, payload):
        code = payload[_ERROR_CODE]
        if code == _E_AUTH_FAILED:
            self.refused = True
            self.end((_TX_ENGINE_REFUSED, payload[_ERROR_TEXT]))
        elif code == _E_BAD_VERSION or code == _E_NOT_JOINED:
            self.end((_TX_ENGINE_MASTER_ERROR, code, payload[_ERROR_TEXT]))

    # ---- tasks -----------------------------------------------------------------------

    def _task(self, payload, seq, now):
        task_id = payload[_TASK_TASK_ID]
        if self.state != JOINED:
            self._send_error(_E_NOT_JOINED, _TX_ENGINE_TASK_EARLY, seq, task_id)
            return
        if self.busy() >= self.slots:
            self._fail(task_id, _E_BUSY, _TX_ENGINE_SLOTS, 0)
            return
        name = payload[_TASK_KERNEL]
        if name not in self.known:
            self._fail(task_id, _E_UNKNOWN_KERNEL, (_TX_ENGINE_NO_KERNEL, name), 0)
            return
        spare = self.spare
        if spare:  # (recycle)
            task = spare.pop()
            task.task_id = task_id
            task.kernel = name
            task.args = payload[_TASK_ARGS]
            task.waits = name in self.waits
        else:
            task = Task(task_id, name, payload[_TASK_ARGS], name in self.waits)
        refs = payload.get(_TASK_REFS)
        if refs:  # shared operands (SPEC.md section 6): in place, or the task waits
            ops = self._operands()
            if ops is None:
                self._fail(task_id, _E_MISSING_OPERAND, _TX_ENGINE_NO_OPERANDS, 0)
                return
            if not ops.admit(self, task, refs, now):
                return
        self.queue.append(task)
        self._pump(now)

    def _operands(self):
        if self.ops is None and self.cache_bytes:
            try:
                import operands
            except ImportError:  # (a module name, not a dotted one: one name less interned)
                from microswarm.firmware import operands
            self.ops = operands.Operands(self.cache_bytes)
        return self.ops

    def _put(self, payload, seq, now):
        if self.state != JOINED:
            self._send_error(_E_NOT_JOINED, _TX_ENGINE_PUT_EARLY, seq)
            return
        ops = self._operands()
        if ops is None:
            self._send_error(_E_UNEXPECTED, _TX_ENGINE_NO_OPERANDS, seq)
            return
        ops.on_put(self, payload, seq, now)

    def _pump(self, now):
        queue = self.queue
        while queue and self.state == JOINED:
            task = queue[0]
            if self.computing and not task.waits:
                return
            queue.pop(0)
            task.started = now
            try:
                bad = msw_kernel.check(task.kernel, task.args)
            except MemoryError:  # its module, loaded on its first task, did not fit
                self.stats.done += 1
                self._fail(task.task_id, _E_NO_MEMORY, (_TX_ENGINE_NO_HEAP_LOAD, task.kernel), 0)
                continue
            if bad is not None:  # the declared kinds do not fit: the kernel never runs
                self.stats.done += 1
                self._fail(task.task_id, _E_BAD_ARGS, (_TX_ENGINE_BAD_ARGS, cbor.text(bad)), 0)
                continue
            self.running.append(task)
            if not task.waits:
                self.computing += 1
            self.io.run(task)

    def _fail(self, task_id, code, text, elapsed_us):
        self.io.send(_T_RESULT, {_RESULT_TASK_ID: task_id, _RESULT_ERROR: cbor.text(text),
                                  _RESULT_ELAPSED_US: elapsed_us, _RESULT_CODE: code})

    def finished(self, task, value, error, elapsed_us, now):
        try:
            self.running.remove(task)
        except ValueError:
            return  # a kernel of an ended session
        if not task.waits:
            self.computing -= 1
        task.args = None
        stats = self.stats
        stats.done += 1
        if not self.threads:
            # the link was not read while the kernel held the node: what the master sent
            # meanwhile is still waiting, so that time is not the master's silence
            self.last_rx = now
        if self.state != JOINED:
            return
        task_id = task.task_id
        if task.cancelled:
            self._fail(task_id, _E_CANCELLED, _TX_ENGINE_CANCELLED_RUNNING, elapsed_us)
        elif error is not None:
            self._fail(task_id, error_code(error), describe(error), elapsed_us)
        else:
            result = self._result
            if result is None:
                result = {_RESULT_TASK_ID: task_id, _RESULT_VALUE: value,
                          _RESULT_ELAPSED_US: elapsed_us}
            else:  # (recycle)
                result[_RESULT_TASK_ID] = task_id
                result[_RESULT_VALUE] = value
                result[_RESULT_ELAPSED_US] = elapsed_us
                if _RESULT_NATIVE in result:
                    del result[_RESULT_NATIVE]
            if task.native is not None:
                result[_RESULT_NATIVE] = task.native
            try:
                self.io.send(_T_RESULT, result)
            except MemoryError:
                result = value = None
                self._fail(task_id, _E_NO_MEMORY, _TX_ENGINE_NO_HEAP_RESULT, elapsed_us)
            except Exception as e:  # the codec's FrameError: too large, not encodable
                code = getattr(e, "code", _E_KERNEL_FAILED)
                result = value = None
                self._fail(task_id, code, (_TX_ENGINE_NOT_SENDABLE, getattr(e, "text", str(e))),
                           elapsed_us)
            if self._result is not None:
                self._result[_RESULT_VALUE] = None  # (sent: the dict does not keep it)
        spare = self.spare
        if spare is not None and len(spare) < self.slots:  # the record serves a later task
            task.started = -1
            task.cancelled = False
            task.native = None
            task.handle = None
            spare.append(task)
        self._pump(now)

    # ---- clocks ----------------------------------------------------------------------

    def next_deadline(self):
        state = self.state
        if state == JOINED:
            silent = self.last_rx + _SILENT_BEATS * self.heartbeat_ms + 1
            return self.next_beat if self.next_beat < silent else silent
        if state == _CLOSED:
            return None
        return self.join_deadline

    def on_timer(self, now):
        state = self.state
        if state == _CLOSED:
            return
        if state != JOINED:
            if now >= self.join_deadline:
                self.end((_TX_ENGINE_NO_WELCOME, _JOIN_TIMEOUT_MS))
            return
        # The clock runs at least once per interval; a longer gap means this node did not
        # run (its host stalled): that time is not the master's silence.
        gap = now - self.last_tick - self.heartbeat_ms
        if gap > 0:
            self.last_rx += gap
        self.last_tick = now
        silent = now - self.last_rx
        if silent > _SILENT_BEATS * self.heartbeat_ms:
            self.end((_TX_ENGINE_SILENT, int(silent)))
            return
        if self.ops is not None and self.ops.waiting:
            self.ops.expire(self, now - _SILENT_BEATS * self.heartbeat_ms)
        if now >= self.next_beat:
            self.next_beat = now + self.heartbeat_ms
            self.heartbeat(now)
        if self.stats.logs:
            _log().flush(self, now)

    def heartbeat(self, now):
        stats = self.stats
        beat = {_HEARTBEAT_UPTIME_MS: int(now - stats.boot_ms)}
        free = self.io.heap_free()
        if free is not None:
            beat[_HEARTBEAT_HEAP_FREE] = free
            if stats.heap_min is None or free < stats.heap_min:
                stats.heap_min = free
        # (a TASK still arriving in CHUNKs counts here, not in the slots a TASK is admitted
        # to: on a slow serial link a large one takes longer than the master's two heartbeat
        # intervals to arrive, SPEC "Lost frames")
        chunks = self.chunks
        beat[_HEARTBEAT_QUEUE] = self.busy() + (len(chunks.tasks) if chunks is not None else 0)
        beat[_HEARTBEAT_DONE] = stats.done
        beat[_HEARTBEAT_BAD_FRAMES] = stats.bad_frames
        if stats.heap_min is not None:
            beat[_HEARTBEAT_HEAP_MIN] = stats.heap_min
        if self.running:
            beat[_HEARTBEAT_RUNNING] = [[t.task_id, int(now - t.started)] for t in self.running]
        if self.ops is not None:
            held = self.ops.listed()
            if held is not None:
                beat[_HEARTBEAT_OPERANDS] = held
        self.io.send(_T_HEARTBEAT, beat)
