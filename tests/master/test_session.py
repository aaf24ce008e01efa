"""The sans-IO NodeSession: scripted bytes and a fake clock in, frames and events out.

No sockets, no sleeps: every time is a number passed in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microswarm.master import session_events as ev
from microswarm.master.handshake import Limits
from microswarm.master.messages import build, fields
from microswarm.master.session import NodeSession, State
from microswarm.protocol.catalog import PROTOCOL_VERSION, ErrorCode, MsgType
from microswarm.wire import (
    FrameReader,
    LinkAuth,
    SerialDeframer,
    encode_frame,
    encode_message,
    node_mac,
    serial_encode,
)

KEY = b"test cluster key"
NONCE = bytes(range(16))
MASTER_NONCE = bytes(range(100, 116))
VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors"


class _Node:
    """The scripted node's end of the link: its frame MACs once challenged (SPEC.md 5)."""

    auth: LinkAuth | None = None


NODE = _Node()


def session(framing="stream", *, now=0.0, **kw):
    kw.setdefault("limits", Limits(heartbeat_ms=1000, window=4, max_frame=4096))
    NODE.auth = None
    return NodeSession(KEY, now=now, framing=framing, nonce=lambda n: MASTER_NONCE[:n], **kw)


def out(s, framing="stream"):
    reader = SerialDeframer() if framing == "cobs" else FrameReader()
    reader.auth = NODE.auth
    frames = reader.feed(b"".join(s.take_output()))
    assert all(not isinstance(f, Exception) for f in frames), frames
    return frames


def frame(msg_type, payload, seq=0, framing="stream", auth=True):
    data = encode_frame(msg_type, payload, seq, validate=False,
                        auth=NODE.auth if auth else None)
    return serial_encode(data) if framing == "cobs" else data


def hello(seq=0, framing="stream", node_id="n1", **over):
    payload = dict(node_id=node_id, board="unix", fw_version="t",
                   proto_version=PROTOCOL_VERSION, kernels=["echo"], heap_total=1 << 20,
                   heap_free=1 << 20, max_frame=4096, slots=2, nonce=NONCE, link="tcp")
    payload.update(over)
    NODE.auth = None  # a (new) join: no MACs until WELCOME
    return frame(MsgType.HELLO, build(MsgType.HELLO, **payload), seq, framing)


def join(s, now=0.0, framing="stream", **over):
    """HELLO, AUTH_RESPONSE; returns the events of the last step (Joined)."""
    assert s.receive(hello(0, framing, **over), now) == []
    (challenge,) = out(s, framing)
    assert challenge.type == MsgType.AUTH_CHALLENGE
    mac = node_mac(KEY, bytes(challenge.payload[0]), NONCE, over.get("node_id", "n1"))
    got = s.receive(frame(MsgType.AUTH_RESPONSE, {0: mac}, 1, framing), now)
    NODE.auth = LinkAuth.node(KEY, bytes(challenge.payload[0]), NONCE)
    (welcome,) = out(s, framing)
    assert welcome.type == MsgType.WELCOME
    assert [type(e) for e in got] == [ev.Joined]
    return got


def errors(frames):
    return [(f.payload[0], f.payload.get(2)) for f in frames if f.type == MsgType.ERROR]


# ----------------------------------------------------------------------------- join
def test_join_reproduces_the_golden_auth_vectors():
    vec = json.loads((VECTORS / "auth.json").read_text())
    by_name = {f["name"]: f for f in vec["frames"]}
    key = bytes.fromhex(vec["key"])
    NODE.auth = None  # whatever test ran before: the join's frames carry no MAC
    s = NodeSession(key, now=0.0, nonce=lambda n: bytes.fromhex(vec["master_nonce"]),
                    limits=Limits(heartbeat_ms=1000, window=4, max_frame=4096))
    assert s.receive(bytes.fromhex(by_name["auth_hello"]["frame"]), 0.0) == []
    (challenge,) = out(s)
    assert challenge.payload == {0: bytes.fromhex(vec["master_nonce"])}
    got = s.receive(bytes.fromhex(by_name["auth_auth_response"]["frame"]), 0.5)
    (welcome,) = out(s)
    expected = {k: v for k, v in by_name["auth_welcome"]["payload"]["map"]}
    assert welcome.payload[4] == bytes.fromhex(vec["master_proof"])
    assert {k: welcome.payload[k] for k in (0, 1, 2, 3)} == {k: expected[k] for k in (0, 1, 2, 3)}
    (joined,) = got
    assert joined.info.node_id == vec["node_id"] and joined.info.window == 4
    assert s.state is State.JOINED


def test_wrong_mac_is_refused_with_ref_seq_and_closed():
    s = session()
    s.receive(hello(), 0.0)
    out(s)
    wrong = node_mac(b"another key", MASTER_NONCE, NONCE, "n1")
    got = s.receive(frame(MsgType.AUTH_RESPONSE, {0: wrong}, 7), 0.1)
    assert errors(out(s)) == [(ErrorCode.AUTH_FAILED, 7)]
    assert [type(e) for e in got] == [ev.Refused] and s.closed


def test_bad_header_version_gets_exactly_one_error_and_closes():
    s = session()
    data = bytearray(hello(seq=5))
    data[0] = PROTOCOL_VERSION + 1
    got = s.receive(bytes(data), 0.0)
    assert errors(out(s)) == [(ErrorCode.BAD_VERSION, 5)]
    assert [type(e) for e in got] == [ev.BadFrame, ev.Refused] and s.closed


def test_malformed_hello_gets_an_error_and_the_link_closes():
    s = session()
    payload = build(MsgType.HELLO, node_id="n1", board="unix")  # required fields missing
    got = s.receive(frame(MsgType.HELLO, payload, 3), 0.0)
    assert errors(out(s)) == [(ErrorCode.BAD_PAYLOAD, 3)]
    assert ev.Refused in [type(e) for e in got] and s.closed


def test_hello_with_another_protocol_version_refused_with_ref_seq():
    s = session()
    s.receive(hello(seq=4, proto_version=PROTOCOL_VERSION + 1), 0.0)
    assert errors(out(s)) == [(ErrorCode.BAD_VERSION, 4)] and s.closed


def test_first_message_other_than_hello_is_not_joined_with_ref_seq():
    s = session()
    s.receive(frame(MsgType.HEARTBEAT, {0: 1}, 9), 0.0)
    assert errors(out(s)) == [(ErrorCode.NOT_JOINED, 9)] and s.closed


def test_handshake_timeout_answered_and_closed():
    s = session(now=100.0)
    assert s.next_deadline() == pytest.approx(110.0)
    assert s.on_timer(105.0) == [] and out(s) == []
    s.receive(hello(), 106.0)
    out(s)
    got = s.on_timer(110.0)
    assert errors(out(s)) == [(ErrorCode.HANDSHAKE_TIMEOUT, None)]
    assert [type(e) for e in got] == [ev.Refused] and s.closed
    assert s.next_deadline() is None


def test_serial_waits_for_hello_and_only_counts_noise_before_it():
    s = session("cobs")
    assert s.next_deadline() is None  # a board may be plugged in much later
    got = s.receive(b"MicroPython v1.24 on unix\r\n>>> \x00", 0.0)
    assert [type(e) for e in got] == [ev.BadFrame] and s.bad_frames == 1
    assert not s.take_output() and s.state is State.HELLO
    join(s, 50.0, "cobs")
    assert s.joined


def test_serial_console_text_is_counted_never_answered():
    """A board that dropped to its REPL echoes what it gets: answering its text would
    feed the loop. A damaged frame of ours (readable header, bad CRC) is still answered."""
    s = session("cobs")
    join(s, framing="cobs")
    got = s.receive(b"Traceback (most recent call last):\r\n>>> \x00raw REPL\x00", 1.0)
    assert [type(e) for e in got] == [ev.BadFrame, ev.BadFrame] and s.info.bad_frames == 2
    assert not s.take_output() and s.joined
    damaged = bytearray(encode_frame(MsgType.HEARTBEAT, {0: 1}, 9))
    damaged[-1] ^= 0xFF
    s.receive(serial_encode(bytes(damaged)), 1.1)
    assert errors(out(s, "cobs")) == [(ErrorCode.BAD_CRC, 9)]


def test_chunk_before_welcome_is_refused_not_reassembled():
    s = session()
    frames = encode_message(MsgType.HELLO, {0: "x" * 9000}, max_frame=4096, stream=1,
                            validate=False)
    got = s.receive(frames[0], 0.0)
    assert errors(out(s)) == [(ErrorCode.NOT_JOINED, 0)]
    assert ev.Refused in [type(e) for e in got] and s.closed
    assert s.receive(frames[1], 0.0) == []


# ----------------------------------------------------------------------------- joined
def test_negotiated_max_frame_enforced_fatal_on_tcp():
    s = session(limits=Limits(max_frame=8192))
    join(s, max_frame=2048)
    big = frame(MsgType.LOG, {0: 1, 1: "x" * 3000}, 12)
    got = s.receive(big, 1.0)
    assert errors(out(s)) == [(ErrorCode.TOO_LARGE, 12)]
    assert [type(e) for e in got] == [ev.BadFrame, ev.Left] and s.closed


def test_negotiated_max_frame_on_serial_skips_the_frame():
    s = session("cobs", limits=Limits(max_frame=8192))
    join(s, framing="cobs", max_frame=2048)
    got = s.receive(frame(MsgType.LOG, {0: 1, 1: "x" * 3000}, 12, "cobs"), 1.0)
    # discarded as it arrives, in bounded memory: its header is never read, so it is
    # counted and not answered
    assert errors(out(s, "cobs")) == [] and s.info.bad_frames == 1
    assert [type(e) for e in got] == [ev.BadFrame] and s.joined


def test_known_message_in_the_wrong_direction_is_unexpected():
    s = session()
    join(s)
    task = build(MsgType.TASK, task_id=1, kernel="echo", args=[1])
    got = s.receive(frame(MsgType.TASK, task, 4), 1.0)
    assert errors(out(s)) == [(ErrorCode.UNEXPECTED, 4)]
    assert [type(e) for e in got] == [ev.BadFrame] and s.joined and s.info.bad_frames == 1


def test_bad_crc_after_join_counted_answered_link_kept():
    s = session()
    join(s)
    data = bytearray(frame(MsgType.HEARTBEAT, {0: 1}, 9))
    data[-13] ^= 0xFF  # a CRC byte: the 12-byte MAC trailer follows it
    s.receive(bytes(data), 1.0)
    assert errors(out(s)) == [(ErrorCode.BAD_CRC, 9)] and s.joined
    data[-13] ^= 0xFF
    data[-1] ^= 0xFF  # the MAC tag
    s.receive(bytes(data), 1.1)
    assert errors(out(s)) == [(ErrorCode.BAD_MAC, 9)] and s.joined
    s.receive(frame(MsgType.HEARTBEAT, {0: 1}, 10, auth=None), 1.2)  # no MAC at all
    assert errors(out(s)) == [(ErrorCode.BAD_MAC, 10)] and s.info.bad_frames == 3


def test_a_flood_of_bad_frames_is_counted_in_full_and_answered_at_a_bounded_rate():
    s = session()
    join(s)
    data = bytearray(frame(MsgType.HEARTBEAT, {0: 1}, 9))
    data[-1] ^= 0xFF
    got = s.receive(bytes(data) * 1000, 1.0)
    assert len(got) == 1000 and s.info.bad_frames == 1000
    assert len(errors(out(s))) == 20  # the burst
    s.receive(bytes(data) * 1000, 2.0)
    assert len(errors(out(s))) == 10 and s.info.bad_frames == 2000 and s.joined


def test_a_node_flooding_log_lines_has_them_counted_and_only_a_bounded_rate_kept():
    """The firmware limits its own LOG frames (firmware/engine_log.py); a node that does not
    still cannot fill the master's log: LOG_BURST at once, then LOG_PER_S a second."""
    from microswarm.master.session import LOG_BURST, LOG_PER_S

    s = session()
    join(s)
    data = b"".join(frame(MsgType.LOG, {0: 3, 1: f"line {i}"}, 10 + i) for i in range(500))
    got = s.receive(data, 1.0)
    kept = [e for e in got if isinstance(e, ev.NodeLog)]
    assert [e.text for e in kept] == [f"line {i}" for i in range(LOG_BURST)]
    assert kept[0].level == 3
    assert s.info.log_lines == 500 and s.info.log_dropped == 500 - LOG_BURST
    data = b"".join(frame(MsgType.LOG, {0: 1, 1: "later"}, 600 + i) for i in range(20))
    later = [e for e in s.receive(data, 3.0) if isinstance(e, ev.NodeLog)]
    assert len(later) == int(2 * LOG_PER_S) and s.joined and errors(out(s)) == []


def test_results_errors_and_chunked_results():
    s = session()
    join(s)
    s.send_task(5, "echo", ["x" * 10_000], 0, 1.0)
    tasks = out(s)
    assert [f.type for f in tasks] == [MsgType.CHUNK] * 3  # 4096-byte frames
    body = {0: 5, 1: "y" * 10_000, 3: 77}
    pieces = encode_message(MsgType.RESULT, body, seq=2, max_frame=4096, stream=3,
                            validate=False, auth=NODE.auth)
    got = [e for p in pieces for e in s.receive(p, 1.5)]
    assert got == [ev.Result(5, "y" * 10_000, 77, body)]
    s.send_task(6, "echo", [1], 0, 2.0)
    got = s.receive(frame(MsgType.RESULT, {0: 6, 2: "boom", 3: 1, 5: 10}, 9), 2.1)
    assert got == [ev.TaskFailed(6, 10, "boom")]
    assert len(s.held) == 0 and s.info.results == 2 and s.info.errors == 1


def test_restart_hello_on_a_joined_link_leaves_and_rejoins():
    s = session("cobs")
    join(s, framing="cobs")
    got = s.receive(hello(0, "cobs"), 3.0)
    assert [type(e) for e in got] == [ev.Left] and got[0].cause.startswith("node restarted")
    (challenge,) = out(s, "cobs")
    assert challenge.type == MsgType.AUTH_CHALLENGE and s.state is State.AUTH


# ----------------------------------------------------------------------------- liveness
def test_master_heartbeats_each_interval():
    s = session()
    join(s, now=0.0)
    assert s.next_deadline() == pytest.approx(1.0)
    assert s.on_timer(0.5) == [] and out(s) == []
    s.on_timer(1.0)
    (beat,) = out(s)
    assert beat.type == MsgType.HEARTBEAT and beat.payload == {0: 1000}
    s.on_timer(1.5)
    assert out(s) == []


def test_a_task_puts_off_the_masters_next_heartbeat_by_an_interval():
    """A TASK is the node's sign of life (SPEC.md, Heartbeats): the master's HEARTBEAT comes
    an interval after the last TASK, so a node getting tasks hears nothing else, and never
    waits longer than an interval for a frame."""
    s = session()
    join(s, now=0.0)
    s.on_timer(1.0)
    assert [f.type for f in out(s)] == [MsgType.HEARTBEAT]
    s.send_task(1, "echo", [1], 0, 1.4)
    assert [f.type for f in out(s)] == [MsgType.TASK]
    assert s.next_deadline() == pytest.approx(2.4)
    s.receive(frame(MsgType.RESULT, {0: 1, 1: 1, 3: 5}, 2), 1.5)
    s.on_timer(2.0)  # an interval after the last HEARTBEAT, not after the TASK
    assert out(s) == []
    s.send_task(2, "echo", [2], 0, 2.3)
    out(s)
    s.on_timer(2.4)
    assert out(s) == [] and s.next_deadline() == pytest.approx(3.3)
    s.on_timer(3.3)
    (beat,) = out(s)
    assert beat.type == MsgType.HEARTBEAT


def test_serial_master_holds_its_heartbeat_while_the_node_is_silent():
    s = session("cobs")
    join(s, now=0.0, framing="cobs")
    s.on_timer(1.0)
    assert [f.type for f in out(s, "cobs")] == [MsgType.HEARTBEAT]
    s.on_timer(2.0)  # nothing heard for 2 intervals: a board that may be rebooting
    assert out(s, "cobs") == []
    s.receive(frame(MsgType.HEARTBEAT, {0: 5}, 3, "cobs"), 2.5)
    s.on_timer(3.0)
    assert [f.type for f in out(s, "cobs")] == [MsgType.HEARTBEAT]


def test_a_silent_node_is_lost_after_three_intervals():
    s = session()
    join(s, now=0.0, threads=True)
    s.send_task(1, "echo", [1], 0, 0.1)
    for t in (1.0, 2.0, 3.0):
        assert s.on_timer(t) == []
    got = s.on_timer(3.1)
    assert [type(e) for e in got] == [ev.Left] and "lost" in got[0].cause and s.closed


def test_any_frame_keeps_a_node_alive():
    s = session()
    join(s, now=0.0, threads=True)
    for t in range(1, 20):
        s.receive(frame(MsgType.HEARTBEAT, {0: t}, t), t - 0.5)
        assert s.on_timer(float(t)) == []
    assert s.joined


def test_without_threads_silence_while_a_task_runs_is_not_loss_the_deadline_is():
    s = session(deadline_min_s=30.0)
    join(s, now=0.0)  # no `threads` in HELLO
    s.send_task(1, "sleep_ms", [60_000], 0, 1.0, estimate_s=0.5)
    s.send_task(2, "echo", [2], 0, 1.0)
    out(s)
    for t in range(2, 31):
        assert s.on_timer(float(t)) == [], t
    assert s.joined and s.next_deadline() <= 31.0
    got = s.on_timer(31.0)  # the driver's scheduler requeues it and sends CANCEL
    assert got == [ev.TaskFailed(1, ErrorCode.DEADLINE, got[0].text)]
    assert {f.type for f in out(s)} == {MsgType.HEARTBEAT}  # no CANCEL from here
    # task 1 stays held (cancelled) for 3 intervals; task 2 is still queued behind it
    for t in range(32, 34):
        assert s.on_timer(float(t)) == [], t
    # task 1 dropped at 34: task 2 becomes the oldest and starts its clock
    for t in range(34, 64):
        assert s.on_timer(float(t)) == [], t
    got = s.on_timer(64.0)
    assert [e.task_id for e in got] == [2]
    for t in range(65, 67):
        assert s.on_timer(float(t)) == [], t
    # task 2's grace is over: nothing held, the silence since the last frame counts again
    got = s.on_timer(67.0)
    assert [type(e) for e in got] == [ev.Left]


def test_deadline_from_the_learned_estimate_and_heartbeat_running():
    s = session(deadline_factor=10, deadline_min_s=1.0)
    join(s, now=0.0, threads=True)
    s.send_task(1, "k", [], 0, 0.0, estimate_s=2.0)  # budget 20 s from the send
    s.send_task(2, "k", [], 0, 0.0, estimate_s=2.0)  # queued behind: no clock yet
    assert s.held.next_deadline() == pytest.approx(20.0)
    # the node says task 2 runs since 3 s (a second core) and task 1 since 5 s
    s.receive(frame(MsgType.HEARTBEAT, {0: 1, 2: 2, 6: [[1, 5000], [2, 3000]]}, 3), 10.0)
    assert s.held.next_deadline() == pytest.approx(25.0)
    s.receive(frame(MsgType.HEARTBEAT, {0: 1, 2: 2}, 4), 24.5)
    got = s.on_timer(25.0)
    assert [e.task_id for e in got] == [1]


def test_heartbeat_queue_zero_reconciles_tasks_lost_on_the_link():
    s = session()
    join(s, now=0.0, threads=True)
    s.send_task(1, "echo", [1], 0, 1.0)
    s.send_task(2, "echo", [2], 0, 3.5)
    got = s.receive(frame(MsgType.HEARTBEAT, {0: 1, 2: 0}, 3), 4.0)
    assert got == [ev.TaskLost(1)]  # task 2 may still be on the wire
    assert list(s.held.tasks) == [2]


def test_tasks_still_in_the_drivers_buffer_are_not_reconciled_as_lost():
    """On a slow serial port a TASK can wait behind a long CHUNK stream in the driver's
    buffer (a retry behind the rest of a stream the node refused at its first piece): the
    node's empty queue says nothing of it until the bytes have left. It counts as sent when
    they have, and is reconciled from there (before, each such retry was 'lost on the link'
    and counted as a failure, and the job failed after four)."""
    s = session()
    join(s, now=0.0, threads=True)
    s.send_task(1, "echo", [1], 0, 1.0)  # on the wire
    s.take_output()
    s.send_task(2, "echo", [bytes(20_000)], 0, 2.0)  # CHUNKs ...
    s.take_output()
    s.output_blocked(2.01)  # ... the driver could not hand all of them to the OS
    s.send_task(3, "echo", [3], 0, 2.5)  # behind them
    s.take_output()
    s.output_blocked(2.51)
    got = s.receive(frame(MsgType.HEARTBEAT, {0: 1, 2: 0}, 3), 9.0)
    assert got == [ev.TaskLost(1)]  # 2 and 3 never reached the node yet
    assert list(s.held.tasks) == [2, 3]
    s.output_drained(9.5)  # they left at 9.5: the node's answer to them may take 2 beats
    assert s.receive(frame(MsgType.HEARTBEAT, {0: 1, 2: 0}, 4), 11.0) == []
    got = s.receive(frame(MsgType.HEARTBEAT, {0: 1, 2: 0}, 5), 11.6)
    assert got == [ev.TaskLost(2), ev.TaskLost(3)]


def test_heartbeat_queue_zero_answers_cancelled_tasks_the_node_no_longer_holds():
    """The scheduler keeps a cancelled task's credit until the node answers; when that
    CANCELLED answer was lost (or the task was dropped at its deadline), the node's empty
    queue is the answer."""
    s = session(deadline_min_s=5.0)
    join(s, now=0.0, threads=True)
    s.send_task(1, "echo", [1], 0, 1.0, estimate_s=10.0)  # its deadline: 100 s from 1 s
    s.send_task(2, "sleep_ms", [60_000], 0, 1.0, estimate_s=0.1)
    s.cancel(1)  # its CANCELLED answer will be lost on the link
    s.receive(frame(MsgType.HEARTBEAT, {0: 1, 2: 1, 6: [[2, 0]]}, 3), 1.5)
    assert s.on_timer(6.5) == [ev.TaskFailed(2, ErrorCode.DEADLINE, "passed its deadline on n1")]
    s.cancel(2)
    s.receive(frame(MsgType.HEARTBEAT, {0: 1, 2: 2, 6: [[2, 5000]]}, 4), 7.0)
    assert s.on_timer(9.6) == []  # task 2 dropped after its grace: the node may still run it
    assert list(s.held.tasks) == [1] and s.held.dropped == {2}
    got = s.receive(frame(MsgType.HEARTBEAT, {0: 1, 2: 0}, 5), 10.0)
    assert sorted(e.task_id for e in got) == [1, 2]
    assert {(type(e), e.code) for e in got} == {(ev.TaskFailed, ErrorCode.CANCELLED)}
    assert not s.held.tasks and not s.held.dropped


def test_a_stalled_driver_does_not_count_as_the_nodes_silence():
    s = session()
    join(s, now=0.0, threads=True)
    s.on_timer(0.1)
    assert s.on_timer(10.0) == [] and s.joined  # 9.9 s without a tick: our stall
    assert s.on_timer(11.0) == [] and s.on_timer(12.0) == []
    assert [type(e) for e in s.on_timer(12.5)] == [ev.Left]  # 3.5 s since 10.0 - 1


def test_late_timer_calls_are_not_a_stall_and_a_silent_node_is_still_lost_in_time():
    """A driver whose timer comes 50-200 ms after the session's deadline at 300 ms heartbeats
    (a 100 ms tick on a loaded machine) has not stalled: that lateness counts as silence in
    full. A heartbeating node is kept, and one that goes silent is lost at the first call
    after 3 intervals of silence, however late each call was."""
    s = session(limits=Limits(heartbeat_ms=300, window=4, max_frame=4096))
    join(s, now=0.0, threads=True)
    lateness = [0.05, 0.2, 0.12, 0.18, 0.07, 0.2, 0.15]
    node_beats = [0.3 * k for k in range(1, 40)]  # the node heartbeats until 11.7 s
    calls = 0
    now = 0.0
    while now < 20.0:
        due = s.next_deadline()
        now = due + lateness[calls % len(lateness)]
        calls += 1
        while node_beats and node_beats[0] <= now:
            t = node_beats.pop(0)
            assert s.receive(frame(MsgType.HEARTBEAT, {0: int(t * 1000)}, calls), t) == []
        got = s.on_timer(now)
        out(s)
        if got:
            break
    assert [type(e) for e in got] == [ev.Left] and s.closed, got
    assert "lost: no frame for 3 heartbeat intervals" in got[0].cause
    last = 0.3 * 39
    assert last + 0.9 < now <= last + 0.9 + 0.2  # the first (late) call past the bound


def test_a_hello_for_another_cluster_is_refused_naming_both():
    s = session(cluster="lab")
    s.receive(hello(seq=2, cluster="home"), 0.0)
    ((code, ref),) = errors(frames := out(s))
    assert (code, ref) == (ErrorCode.AUTH_FAILED, 2) and s.closed
    assert "'home'" in frames[0].payload[1] and "'lab'" in frames[0].payload[1]


def test_node_bye_and_closing_error_end_the_session():
    s = session()
    join(s)
    got = s.receive(frame(MsgType.BYE, {0: "update"}, 3), 1.0)
    assert [(type(e), e.node_id, e.cause) for e in got] == [
        (ev.Left, "n1", "node said BYE update")] and s.closed
    s = session()
    join(s)
    got = s.receive(frame(MsgType.ERROR, {0: int(ErrorCode.AUTH_FAILED), 1: "bad proof"}, 3),
                    1.0)
    assert [type(e) for e in got] == [ev.NodeError, ev.Left] and s.closed


def test_close_sends_bye_and_reports_left_once():
    s = session()
    join(s)
    assert [type(e) for e in s.close("master stopping")] == [ev.Left]
    (bye,) = out(s)
    assert bye.type == MsgType.BYE and fields(MsgType.BYE, bye.payload)["reason"]
    assert s.close("again") == [] and s.receive(hello(), 2.0) == [] and s.on_timer(9.0) == []
