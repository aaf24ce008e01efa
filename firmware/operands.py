"""Shared operands for the node engine (SPEC.md section 6), imported on the first PUT or
TASK with refs: most nodes never need it. An LRU cache bounded in bytes (HELLO's
operand_cache), and the tasks that wait for operands a NEED asked for.
"""

import hashlib

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


try:
    import cbor
except ImportError:
    from microswarm.firmware import cbor

# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_T_NEED = const(16)
_E_BAD_PAYLOAD = const(4)
_E_NO_MEMORY = const(11)
_E_BAD_ARGS = const(16)
_E_MISSING_OPERAND = const(21)
# END GENERATED

# PUT {hash, data} and NEED {hashes, task_id}: their keys live here, not in msgdefs
PUT_HASH = const(0)
PUT_DATA = const(1)
NEED_HASHES = const(0)
NEED_TASK_ID = const(1)
HASH_SIZE = const(16)
LIST_EVERY = const(8)


def _in_place(data):
    # CBOR whose decoding with copy=False is a view of data: a byte string (major type 2)
    # or a uint8 typed array (tag 64, RFC 8746)
    n = len(data)
    return n > 0 and (data[0] >> 5 == 2 or (n > 1 and data[0] == 0xD8 and data[1] == 64))


class Operands:
    def __init__(self, budget):
        self.budget = budget
        self.used = 0
        self.keys = []  # hashes held, least recently used first (HEARTBEAT operands)
        self.values = {}  # hash -> [value, size]
        self.waiting = []  # [task, {arg index: hash still missing}, since_ms]
        self.beats = 0  # HEARTBEATs until the list goes out again (0: it changed)

    def put(self, payload, owned=False):
        """Store one PUT's operand. Returns None, or (ErrorCode, why) when it was refused
        (nothing stored). One larger than the whole cache is not stored (its tasks time
        out). owned: the payload is a reassembled message's, a buffer of its own; an
        operand that is a byte string or a uint8 typed array is then kept as a view into
        it instead of a copy (the message's bytes held once, not twice at its peak)."""
        h = bytes(payload[PUT_HASH])
        data = payload[PUT_DATA]
        if hashlib.sha256(data).digest()[:HASH_SIZE] != h:
            return _E_BAD_PAYLOAD, "PUT data does not match its hash"
        if h in self.values:
            self._touch(h)
            return None
        size = len(data)
        if size > self.budget:
            return None
        keys = self.keys
        self.beats = 0
        while keys and self.used + size > self.budget:
            self.used -= self.values.pop(keys.pop(0))[1]
        try:
            if owned and _in_place(data):
                value = cbor.loads(data, 0, None, False)
            else:
                value = cbor.loads(data)  # copies: data may point into a frame buffer
        except MemoryError:
            return _E_NO_MEMORY, "no heap for the operand"
        except ValueError as e:
            return _E_BAD_PAYLOAD, "PUT data is not CBOR: " + str(e)
        self.values[h] = [value, size]
        keys.append(h)
        self.used += size
        return None

    def listed(self):
        """The hashes for this HEARTBEAT, or None: sent when they changed, and every
        LIST_EVERY beats (a HEARTBEAT lost on the link)."""
        if self.beats:
            self.beats -= 1
            return None
        self.beats = LIST_EVERY - 1
        return self.keys

    def _touch(self, h):
        keys = self.keys
        if keys[-1] != h:
            keys.remove(h)
            keys.append(h)

    def resolve(self, args, refs):
        """Put the operands held into `args` (in place); the ones missing stay in the
        returned {index: hash} (empty: the task can run). Raises IndexError for an index
        outside args."""
        missing = {}
        for i in refs:
            h = bytes(refs[i])
            if not 0 <= i < len(args):
                raise IndexError("refs index " + str(i) + " outside the arguments")
            entry = self.values.get(h)
            if entry is None:
                missing[i] = h
            else:
                args[i] = entry[0]
                self._touch(h)
        return missing

    def admit(self, engine, task, refs, now):
        """True when the task can queue: its operands are in place. Otherwise it waits
        (NEED sent) or it failed (a refs index outside its arguments: BAD_ARGS)."""
        try:
            missing = self.resolve(task.args, refs)
        except IndexError as e:
            engine._fail(task.task_id, _E_BAD_ARGS, str(e), 0)
            return False
        if not missing:
            return True
        self.waiting.append([task, missing, now])
        engine.io.send(_T_NEED, {NEED_HASHES: list(missing.values()),
                                NEED_TASK_ID: task.task_id})
        return False

    def ready(self):
        """The waiting tasks whose operands have all arrived, in arrival order."""
        out = []
        waiting = self.waiting
        i = 0
        while i < len(waiting):
            entry = waiting[i]
            missing = entry[1]
            if missing:
                missing = self.resolve(entry[0].args, missing)
                entry[1] = missing
            if missing:
                i += 1
            else:
                out.append(waiting.pop(i)[0])
        return out

    def on_put(self, engine, payload, seq, now):
        """A PUT arrived on the joined session: store it, start the tasks it completes."""
        refused = self.put(payload, engine.owned)
        if refused is not None:
            engine.stats.bad_frames += 1
            engine._send_error(refused[0], refused[1], seq)
            return
        if self.waiting:
            engine.queue.extend(self.ready())
            engine._pump(now)

    def expire(self, engine, before):
        """Answer MISSING_OPERAND for the tasks waiting since before `before` (ms)."""
        waiting = self.waiting
        i = 0
        while i < len(waiting):
            if waiting[i][2] < before:
                task = waiting.pop(i)[0]
                engine._fail(task.task_id, _E_MISSING_OPERAND, "operands did not arrive", 0)
            else:
                i += 1

    def drop(self, task_id):
        """Take out the waiting task `task_id`; True if there was one."""
        waiting = self.waiting
        for i in range(len(waiting)):
            if waiting[i][0].task_id == task_id:
                del waiting[i]
                return True
        return False
