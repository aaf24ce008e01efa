"""What an echo TASK allocates on a board's TCP path: nothing per task, once the first
tasks have made the reader's, engine's and writer's reusable parts (alloc_vm.py, in the
MicroPython VM with the firmware compiled as deployed, gc disabled, gc.mem_alloc()
differences). A frame of a new length still makes its slices once (32 bytes each on this
64-bit VM; the kernel's run time in the RESULT varies with the machine's load), so the
bound is an average well below one object per task: the design before this one allocated
about 28 objects (908 bytes) per echo task.

The path is the worker's own: frame_tcp.StreamReader(reuse=True) decodes a TASK into the same
dict and a spare argument list, and keeps its buffer's slices; Session.dispatch runs the
engine (Task records recycled) and the INLINE kernel; the RESULT is encoded from one dict
into the FrameWriter's buffer, its CRC and MAC over kept slices. `microswarm bench
firmware` measures the same through a real master and socket (docs/bench.md)."""

from __future__ import annotations

import json
from pathlib import Path

from microswarm import wire
from microswarm.protocol.catalog import MsgType as T

from .conftest import KEY, make_flash
from .test_engine_differential import HELLO, MASTER_NONCE, NODE_ID, NODE_NONCE, Master

WARM = 8
TASKS = 400
BOUND = 4  # bytes per task, on average over TASKS


def _script() -> dict:
    m = Master()
    join = [m.frames(T.AUTH_CHALLENGE, {0: MASTER_NONCE}),
            m.frames(T.WELCOME, {0: NODE_ID, 1: 100, 2: 2, 3: 1024,
                                 4: wire.master_proof(KEY, NODE_NONCE, MASTER_NONCE),
                                 5: 1 << 16})]
    m.auth = wire.LinkAuth.master(KEY, MASTER_NONCE, NODE_NONCE)
    cases = {
        # task ids cross 255 (a 2-byte CBOR head), values cross 23 and 255
        "echo_int": [m.task(200 + i, "echo", [i * 7]) for i in range(WARM + TASKS)],
        # a text argument: a kernel's name is interned, its decode makes no new str
        "echo_name": [m.task(1000 + i, "echo", ["matmul"]) for i in range(WARM + TASKS)],
    }
    return {"hello": wire.cbor.encode_payload(HELLO).hex(), "key": KEY.hex(),
            "nonce": NODE_NONCE.hex(), "join": [f.hex() for f in join], "warm": WARM,
            "order": list(cases), "cases": {k: [f.hex() for f in v] for k, v in cases.items()}}


def test_an_echo_task_allocates_nothing_per_task_on_the_tcp_path(tmp_path, vm_script):
    flash = make_flash(tmp_path)
    source = (Path(__file__).parent / "alloc_vm.py").read_text()
    out = vm_script(flash, source, 1 << 22, json.dumps(_script()).encode(),
                    modules=("vm_worker.py",))
    found = {}
    for line in out.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            found[row["case"]] = row
    assert found.pop("joined") == {"case": "joined", "engine_join": False}, out
    assert set(found) == {"echo_int", "echo_name"}, out
    for name, row in found.items():
        assert row["tasks"] == TASKS
        stages = row["stages"]
        if name == "echo_name":  # encoding a str value makes its UTF-8 bytes: one object
            stages.pop("dispatch")
        assert sum(stages.values()) < BOUND * TASKS, (name, row)
