# Heap allocated per TASK on the worker's TCP path, in the MicroPython VM, for
# test_alloc.py: the firmware's own StreamReader (as worker.Worker makes it), Session
# (dispatch: engine, INLINE kernels, RESULT) and FrameWriter, with a link that drops what
# it is given. Reads a JSON script on stdin: the HELLO payload, the key, the node nonce,
# the join frames and, per case, the TASK frames (hex). For each case it prints one JSON
# line: {"case": name, "stages": {stage: bytes}} summed over the frames after the first
# `warm`, with gc disabled (gc.mem_alloc() differences: what the path allocates).
import binascii
import gc
import json
import sys

import cbor
import engine
import frame
import frame_tcp
import kernels  # noqa: F401 (the built-in kernels; a board's msw_boot registers them)
import worker
from vm_worker import Worker


class Link:
    kind = "tcp"
    cobs = False

    def put(self, view):
        pass

    def pending(self):
        return False


def main():
    script = json.loads(sys.stdin.read())
    hello = cbor.loads(binascii.unhexlify(script["hello"]))
    max_frame = hello[8]  # HELLO max_frame (SPEC.md)
    session = worker.Session(Worker(hello, binascii.unhexlify(script["key"]), max_frame), Link())
    eng = session.engine
    session.heap_free = lambda: None
    reader = session.reader = frame_tcp.StreamReader(max_frame, copy=False, reuse=True)
    eng.start(0, binascii.unhexlify(script["nonce"]))
    for data in script["join"]:
        data = binascii.unhexlify(data)
        view = reader.want()
        view[:] = data[:7]
        reader.advance(7)
        view = reader.want()
        view[:] = data[7:]
        session.dispatch(reader.advance(len(view)), 1)
    assert eng.state == engine.JOINED, eng.end_reason
    # the join's code (engine_join.py) left with the WELCOME
    print(json.dumps({"case": "joined", "engine_join": "engine_join" in sys.modules}))
    mem = gc.mem_alloc
    warm = script["warm"]
    for name in script["order"]:
        frames = [binascii.unhexlify(f) for f in script["cases"][name]]
        parts = [(f[:7], f[7:]) for f in frames]
        used = {"read": 0, "decode": 0, "dispatch": 0}
        gc.collect()
        gc.disable()
        for i in range(len(parts)):
            head, body = parts[i]
            a = mem()
            view = reader.want()  # as link_tcp.read_frames: header, then the rest
            view[:] = head
            reader.advance(7)
            view = reader.want()
            view[:] = body
            b = mem()
            item = reader.advance(len(view))
            c = mem()
            session.dispatch(item, 2 + i)
            d = mem()
            item = None
            if i >= warm:
                used["read"] += b - a
                used["decode"] += c - b
                used["dispatch"] += d - c
        gc.enable()
        print(json.dumps({"case": name, "tasks": len(parts) - warm, "stages": used}))


main()
