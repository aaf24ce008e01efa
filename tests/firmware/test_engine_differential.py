"""Differential test of the node engine: one scripted exchange (join, tasks, a kernel error,
cancel of a queued and of a running task, BUSY, a chunked task, bad frames, heartbeats,
the master's silence) run through the firmware's worker session inside the MicroPython VM
(engine_script_vm.py: firmware codec, firmware/engine.py), through the CPython
in-process node (microswarm.master.inproc: the host codec, the same engine file) and
through the simulated node (microswarm.sim.node: its packet link, codec and timers on the
virtual clock) gives the same bytes on the wire and the same requests to the kernel
runner, step by step. Timer steps fall on the engine's own deadlines, so the simulated
node, whose timers the virtual clock fires, meets them where the script calls them.

Nonces, the clock and kernel run times come from the script, so every frame is
deterministic and compared byte for byte, MACs included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from microswarm import wire
from microswarm.firmware import engine as E
from microswarm.firmware import kernels, msw_boot
from microswarm.master.inproc import InprocNode
from microswarm.protocol.catalog import (
    CRC_SIZE,
    FLAG_MAC,
    HEADER_SIZE,
    MAC_TRAILER_SIZE,
    PROTOCOL_VERSION,
    ErrorCode,
    MsgType,
    key,
)
from microswarm.sim.events import EventQueue
from microswarm.sim.node import SimNode

from .conftest import KEY, make_flash

T = MsgType
NODE_NONCE = bytes(range(16))
MASTER_NONCE = bytes(range(100, 116))
NODE_ID = "diff-1"
HELLO = {key(T.HELLO, name): value for name, value in {
    "node_id": NODE_ID, "board": "unix", "fw_version": "diff", "proto_version": PROTOCOL_VERSION,
    "kernels": ["echo", "mandelbrot", "monte_carlo_pi", "sha256", "sleep_ms"],
    "heap_total": 1 << 20,
    "heap_free": 1 << 19, "max_frame": 16384, "slots": 2, "link": "tcp",
    "max_message": 1 << 16, "threads": True}.items()}


class Master:
    """The master's frames, made ahead of the run (the nonces are fixed)."""

    def __init__(self) -> None:
        self.seq = 0
        self.stream = 0
        self.auth: wire.LinkAuth | None = None

    def frames(self, msg_type: int, payload: dict, max_frame: int = 16384) -> bytes:
        self.stream += 1
        out = wire.encode_message(msg_type, payload, seq=self.seq, max_frame=max_frame,
                                  stream=self.stream, auth=self.auth)
        self.seq = (self.seq + len(out)) & 0xFFFF
        return b"".join(out)

    def raw(self, msg_type: int, body: bytes) -> bytes:
        frame = wire.pack_frame(msg_type, body, self.seq, 0, self.auth)
        self.seq += 1
        return frame

    def task(self, task_id: int, kernel: str, args: list, **kw: Any) -> bytes:
        return self.frames(T.TASK, {0: task_id, 1: kernel, 2: args}, **kw)


def script() -> list[list]:
    m = Master()
    challenge = m.frames(T.AUTH_CHALLENGE, {0: MASTER_NONCE})
    welcome = m.frames(T.WELCOME, {0: NODE_ID, 1: 100, 2: 2, 3: 1024, 4: wire.master_proof(
        KEY, NODE_NONCE, MASTER_NONCE), 5: 1 << 16})
    m.auth = wire.LinkAuth.master(KEY, MASTER_NONCE, NODE_NONCE)
    forged = bytearray(m.task(20, "echo", [1]))
    forged[-1] ^= 1  # the MAC's last byte
    bad_crc = bytearray(m.task(21, "echo", [1]))
    bad_crc[8] ^= 0x40  # a payload byte: the CRC no longer matches
    steps: list[list] = [
        ["start", 0, NODE_NONCE.hex()],
        ["rx", 5, challenge.hex()],
        ["rx", 10, welcome.hex()],
        ["rx", 20, m.task(1, "echo", [[1, -2, "x", b"\x00\xff", 1.5, 0.1, None, True,
                                       {"k": [2**40, -(2**63)]}]]).hex()],
        ["finish", 21, 1, 7],
        ["rx", 30, (m.task(2, "monte_carlo_pi", [3, 2000])
                    + m.task(3, "sleep_ms", [500])).hex()],  # a wait starts beside a kernel
        ["rx", 40, m.task(4, "echo", [4]).hex()],  # both slots taken: BUSY
        ["timer", 110],  # HEARTBEAT listing both running tasks
        ["rx", 120, m.frames(T.CANCEL, {0: 3}).hex()],  # running: the runner is told
        ["finish", 121, 3, 91_000],  # CANCELLED while running
        ["rx", 125, m.frames(T.CANCEL, {0: 3}).hex()],  # not held any more: ignored
        ["finish", 130, 2, 100_000],
        ["rx", 140, m.task(5, "sha256", [bytes(range(256)) * 12], max_frame=1024).hex()],
        ["finish", 150, 5, 900],
        ["rx", 160, m.task(6, "no_such_kernel", []).hex()],  # UNKNOWN_KERNEL
        ["rx", 170, m.task(7, "sleep_ms", [-5]).hex()],  # BAD_ARGS: the kinds, never run
        ["rx", 180, (m.task(8, "monte_carlo_pi", [1, 10])
                     + m.task(9, "monte_carlo_pi", [2, 10])).hex()],  # 9 queued behind 8
        ["rx", 190, m.frames(T.CANCEL, {0: 9}).hex()],  # queued: CANCELLED at once
        ["finish", 195, 8, 50],
        # a RESULT over the link's frame limit goes as CHUNKs; one over the master's
        # max_message is refused by the node's own codec: TOO_LARGE
        ["rx", 196, m.task(10, "echo", [bytes(range(256)) * 10], max_frame=1024).hex()],
        ["finish", 197, 10, 30],
        ["rx", 198, m.task(11, "mandelbrot", [0, 0, 1, 300, 120, 1]).hex()],
        ["finish", 199, 11, 40],
        ["rx", 200, bytes(forged).hex()],  # BAD_MAC, the session stays
        ["rx", 201, bytes(bad_crc).hex()],  # BAD_CRC
        ["rx", 202, m.raw(T.TASK, b"\xa1\x00").hex()],  # MAC'd, but no kernel or args
        ["rx", 203, m.frames(T.RESULT, {0: 1, key(T.RESULT, "value"): 0,
                                        key(T.RESULT, "elapsed_us"): 1}).hex()],  # UNEXPECTED
        ["rx", 204, m.frames(T.HEARTBEAT, {0: 1}).hex()],
        ["timer", 210],
        ["timer", 310],
        ["timer", 410],
        ["timer", 505],  # the master has been silent for 3 intervals: the session ends
        ["timer", 610],
    ]
    return steps


def run_vm(vm_script, flash: Path, steps: list[list]) -> list[list]:
    source = (Path(__file__).parent / "engine_script_vm.py").read_text()
    stdin = json.dumps({"hello": wire.cbor.encode_payload(HELLO).hex(), "key": KEY.hex(),
                        "steps": steps}).encode()
    out = vm_script(flash, source, 1 << 21, stdin, modules=("vm_worker.py",))
    return [json.loads(line) for line in out.splitlines() if line.startswith("[")]


class _Link:
    kind = "tcp"

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data


class ScriptedNode(InprocNode):
    """The in-process node with its kernel runner replaced by the script."""

    def __init__(self) -> None:
        super().__init__(NODE_ID, KEY)
        self.asked: list[list] = []
        self.held: dict[int, E.Task] = {}

    def run(self, task: E.Task) -> None:
        self.held[task.task_id] = task
        self.asked.append(["run", task.task_id, task.kernel])

    def cancel(self, task: E.Task) -> None:
        self.asked.append(["cancel", task.task_id])

    def close(self, reason: str) -> None:
        self.asked.append(["close", reason])

    def _wake(self) -> None:
        pass  # the script fires the engine's timers (its "timer" steps): no clock of its own

    def finish(self, task_id: int, elapsed: int, now: float) -> None:
        assert self.engine is not None
        self.engine.finished(*call(self.held.pop(task_id)), elapsed, now)


def call(task: E.Task) -> tuple[E.Task, Any, BaseException | None]:
    """The kernel of `task` run now, as a runner does: (task, value, error)."""
    fn, task.native = kernels.lookup(task.kernel)
    try:
        return task, fn(*task.args), None
    except Exception as exc:
        return task, None, exc


def run_cpython(steps: list[list]) -> list[list]:
    node = ScriptedNode()
    link = node.link = _Link()  # type: ignore[assignment]
    eng = node.engine = E.Engine(node, dict(HELLO), KEY, kernels.KERNELS, kernels.WAITS,
                                 E.Stats(0, None))
    out = []
    for step in steps:
        what, now = step[0], step[1]
        if what == "start":
            eng.start(now, bytes.fromhex(step[2]))
        elif what == "rx":
            node.feed(bytes.fromhex(step[2]), now)
        elif what == "timer":
            eng.on_timer(now)
        elif what == "finish":
            node.finish(step[2], step[3], now)
        out.append([link.out.hex(), node.asked])
        link.out = bytearray()
        node.asked = []
    return out


class _SimLink:
    """The link model's place: what the node sends is kept, in order (no latency or loss:
    those are the simulation's, not the node's)."""

    serial = False
    connected = True
    tx = None

    def __init__(self) -> None:
        self.out = bytearray()

    def send(self, direction: Any, data: bytes, now: float) -> None:
        self.out += data


class _SimMaster:
    def __init__(self) -> None:
        self.accepted = 0

    def accept(self, node: SimNode) -> int | None:
        self.accepted += 1
        return 1 if self.accepted == 1 else None  # one session: no second one after it


class _Nonces:
    def randbytes(self, n: int) -> bytes:
        return NODE_NONCE

    def random(self) -> float:
        return 0.5


class _Sim:
    """What a SimNode asks of its Simulation: the virtual clock, the cluster key, nonces
    and a master that accepts the one connection."""

    def __init__(self) -> None:
        self.events = EventQueue()
        self.key = KEY
        self.rng_nonce = _Nonces()
        self.master = _SimMaster()
        self.kernel_about = msw_boot.hello_fields()

    def trace(self, *args: Any) -> None:
        pass

    def gantt_add(self, *args: Any) -> None:
        pass

    def count(self, *args: Any) -> None:
        pass


class ScriptedSimNode(SimNode):
    """The simulated node (sim/node.py: its link, codec, timers on the virtual clock),
    with the script's HELLO and its kernel runner replaced by the script."""

    __slots__ = ("asked", "held")

    def __init__(self, sim: _Sim) -> None:
        super().__init__(sim, 0, NODE_ID, "unix", 1.0, 1.0, 2, _SimLink())  # type: ignore
        self.asked: list[list] = []
        self.held: dict[int, E.Task] = {}

    def hello(self) -> dict[int, Any]:
        return dict(HELLO)

    def run(self, task: E.Task) -> None:
        self.held[task.task_id] = task
        task.handle = [None, None, self.sim.events.now, None, 0.0]
        self.asked.append(["run", task.task_id, task.kernel])

    def cancel(self, task: E.Task) -> None:
        self.asked.append(["cancel", task.task_id])

    def close(self, reason: str) -> None:
        self.asked.append(["close", reason])
        super().close(reason)


def run_sim(steps: list[list]) -> list[list]:
    """The script through the simulated node's driver: every step first runs the virtual
    clock to its time (the node's own timers fire there, at the engine's deadlines)."""
    sim = _Sim()
    node = ScriptedSimNode(sim)
    link = node.link
    out = []
    for step in steps:
        what, now = step[0], step[1]
        sim.events.run(until=now / 1000.0)
        if what == "start":
            node.power_on()
        elif what == "rx":  # a packet link: one frame per delivery
            for data in split(step[2]):
                node.receive(node.boot, node.epoch, data)
        elif what == "finish":  # as ScriptedNode.finish, then the driver re-arms its timer
            assert node.engine is not None
            node.engine.finished(*call(node.held.pop(step[2])), step[3], sim.events.now * 1000.0)
            node._arm()
        out.append([link.out.hex(), node.asked])
        link.out = bytearray()
        node.asked = []
    return out


def assert_same(steps: list[list], one: list[list], other: list[list]) -> None:
    assert len(one) == len(other) == len(steps)
    for step, a, b in zip(steps, one, other, strict=True):
        fa, fb = split(a[0]), split(b[0])
        assert a[1] == b[1] and len(fa) == len(fb), (step[:2], a, b)
        for x, y in zip(fa, fb, strict=True):
            assert same_frame(x, y), (step[:2], x.hex(), y.hex())


def split(data: str) -> list[bytes]:
    """What one step wrote, cut into frames (header, payload, CRC, MAC trailer)."""
    raw = bytes.fromhex(data)
    out = []
    while raw:
        length = raw[5] | raw[6] << 8
        size = HEADER_SIZE + length + CRC_SIZE + (MAC_TRAILER_SIZE if raw[2] & FLAG_MAC else 0)
        out.append(raw[:size])
        raw = raw[size:]
    return out


def _payload(frame: bytes) -> Any:
    return wire.decode_payload(frame[HEADER_SIZE:HEADER_SIZE + (frame[5] | frame[6] << 8)])


def same_frame(a: bytes, b: bytes) -> bool:
    """Byte for byte; except that an ERROR for a payload the codec could not decode may word
    its text in the codec's own way (the host's CBOR decoder is cbor2): then every other
    field must match."""
    if a == b:
        return True
    if a[1] != b[1] or a[1] != T.ERROR:
        return False
    pa, pb = _payload(a), _payload(b)
    text = key(T.ERROR, "text")
    return (pa.get(key(T.ERROR, "code")) == ErrorCode.BAD_PAYLOAD and a[:5] == b[:5]
            and {k: v for k, v in pa.items() if k != text}
            == {k: v for k, v in pb.items() if k != text})


@pytest.mark.slow
def test_vm_and_cpython_engines_say_the_same_bytes(tmp_path, vm_script):
    steps = script()
    flash = make_flash(tmp_path / "flash", "unix")
    vm = run_vm(vm_script, flash, steps)
    host = run_cpython(steps)
    assert_same(steps, vm, host)
    assert_same(steps, vm, run_sim(steps))
    # the script reached what it meant to: BUSY, both cancels, the chunked task, bad
    # frames, and the end by silence
    frames = [(f[1], _payload(f)) for step in host for f in split(step[0])]
    results = {p[0]: p for t, p in frames if t == T.RESULT}
    code = key(T.RESULT, "code")
    assert [results[t].get(code) for t in (1, 2, 3, 4, 6, 7, 8, 9)] == [
        None, None, ErrorCode.CANCELLED, ErrorCode.BUSY, ErrorCode.UNKNOWN_KERNEL,
        ErrorCode.BAD_ARGS, None, ErrorCode.CANCELLED]
    assert len(results[5][key(T.RESULT, "value")]) == 32
    assert results[11][code] == ErrorCode.TOO_LARGE
    chunks = [p for t, p in frames if t == T.CHUNK]
    assert len(chunks) == 3 and chunks[0][1] == T.RESULT  # task 10's 2,560 bytes
    errors = [p[key(T.ERROR, "code")] for t, p in frames if t == T.ERROR]
    assert errors == [ErrorCode.BAD_MAC, ErrorCode.BAD_CRC, ErrorCode.BAD_PAYLOAD,
                      ErrorCode.UNEXPECTED]
    assert [a for s in host for a in s[1] if a[0] == "close"] == [
        ["close", "master silent for 301 ms"]]


def test_simulated_and_in_process_nodes_say_the_same_bytes():
    """The simulated node's column on its own (no VM): the same script, the same bytes as
    the in-process node, hence as the board (the test above)."""
    steps = script()
    assert_same(steps, run_sim(steps), run_cpython(steps))
