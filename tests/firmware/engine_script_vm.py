# A scripted run of the board's worker session in the MicroPython VM, for the differential
# test (test_engine_differential.py). Run inside a board's flash folder; reads the script
# (JSON) on stdin and prints one JSON line per step: the bytes the node wrote during it (hex)
# and what it asked of its kernel runner. The engine, codec (frame_tcp.StreamReader and
# FrameWriter) and the worker's Session (send, challenged, on_joined, dispatch) are the
# firmware's own; the clock, the nonces and the kernels' run times come from the script.
import binascii
import json
import sys

import cbor
import engine
import frame
import frame_tcp
import kernels
import worker
from vm_worker import Worker


class Link:
    kind = "tcp"
    cobs = False

    def __init__(self):
        self.out = bytearray()

    def put(self, view):
        self.out += view


def main():
    script = json.loads(sys.stdin.read())
    hello = cbor.loads(binascii.unhexlify(script["hello"]))
    link = Link()
    session = worker.Session(Worker(hello, binascii.unhexlify(script["key"]),
                                    hello[8]), link)  # 8: HELLO max_frame (SPEC.md)
    eng = session.engine
    asked = []
    held = {}

    def run(task):
        held[task.task_id] = task
        asked.append(["run", task.task_id, task.kernel])

    def cancel(task):
        asked.append(["cancel", task.task_id])

    def close(reason):
        asked.append(["close", reason])

    session.run = run
    session.cancel = cancel
    session.close = close
    session.heap_free = lambda: None
    reader = session.reader = frame_tcp.StreamReader(session.max_frame, copy=False, reuse=True)

    def feed(data, now):
        # as link_tcp.read_frames: one frame at a time out of the reader's buffer
        src = memoryview(data)
        pos = 0
        while pos < len(src) and eng.end_reason is None:
            want = reader.want()
            k = min(len(want), len(src) - pos)
            want[:k] = src[pos:pos + k]
            pos += k
            eng.last_rx = now
            try:
                item = reader.advance(k)
            except frame.FrameError as e:
                eng.bad_frame(e.code, e.text, e.seq, e.fatal, now)
                if e.fatal:
                    return
                continue
            if item is not None:
                session.dispatch(item, now)

    for step in script["steps"]:
        what, now = step[0], step[1]
        if what == "start":
            eng.start(now, binascii.unhexlify(step[2]))
        elif what == "rx":
            feed(binascii.unhexlify(step[2]), now)
        elif what == "timer":
            eng.on_timer(now)
        elif what == "finish":  # as worker.Session.run_loop, with the script's run time
            # (its finish(): the arguments' list goes back to the reader for later TASKs)
            task = held.pop(step[2])
            fn, task.native = kernels.lookup(task.kernel)
            value = error = None
            elapsed = step[3]
            try:
                value = fn(*task.args)
            except Exception as e:
                error = e
            session.finish(task, value, error, elapsed, now)
        print(json.dumps([binascii.hexlify(link.out).decode(), asked]))
        link.out = bytearray()
        asked.clear()


main()
