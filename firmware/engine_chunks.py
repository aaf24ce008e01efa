"""CHUNK streams for the node engine (imported on the first CHUNK: most tasks need none).

reassembly.Reassembler does the reassembly and its limits; Chunks, one, adds what the engine answers
with: the task id of a TASK whose stream failed, read from the stream's first piece.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_T_TASK = const(5)
# END GENERATED

try:
    import reassembly
except ImportError:
    from microswarm.firmware import reassembly


def peek_task_id(data):
    """The task id at the start of an encoded TASK payload (a map whose first key is 0,
    task_id, as every sender writes it), or None."""
    n = len(data)
    if n < 3 or not 0xA0 <= data[0] <= 0xB7 or data[1] != 0:
        return None
    head = data[2]
    if head < 24:
        return head
    size = 1 << (head - 24) if 24 <= head <= 27 else 0
    if size == 0 or n < 3 + size:
        return None
    value = 0
    for i in range(size):
        value = (value << 8) | data[3 + i]
    return value


class Chunks(reassembly.Reassembler):
    # (a Reassembler itself, and its arguments positional: each name here is interned at a
    # node's first CHUNK, next to the message's buffer; docs/qemu.md, the big task)
    def __init__(self, max_message, count):
        super().__init__(max_message, False, count)
        self.tasks = {}  # stream -> task id of the TASK it carries

    def add(self, payload, flags, seq):
        stream = payload[0]
        if payload[3] == 0 and payload[1] == _T_TASK:
            task_id = peek_task_id(payload[4])
            if task_id is not None:
                self.tasks[stream] = task_id
        try:
            whole = super().add(payload, flags, seq)
        except ValueError as e:  # frame.FrameError
            e.task_id = self.tasks.pop(stream, None)
            raise
        if whole is not None:
            self.tasks.pop(stream, None)
        return whole
