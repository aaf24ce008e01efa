"""The master end to end with in-process nodes over real loopback TCP and memory pipes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket

import pytest

from microswarm.firmware import kernels, msw_boot
from microswarm.master import JobFailedError, Master
from microswarm.master.inproc import InprocNode
from microswarm.master.messages import build, fields
from microswarm.protocol.catalog import PROTOCOL_VERSION, ErrorCode, MsgType
from microswarm.wire import FrameReader, LinkAuth, decode_frame, encode_frame, node_mac

KEY = b"test cluster key"

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 50))


def master(**kw) -> Master:
    kw.setdefault("key", KEY)
    kw.setdefault("tcp_port", 0)
    kw.setdefault("udp_port", None)
    return Master(**kw)


def mandel_tasks():
    step = 1 << 9
    return [[-2 * 8192 + tx * 8 * step, -8192 + ty * 8 * step, step, 8, 8, 40]
            for ty in range(4) for tx in range(6)]


class RawNode:
    """A hand-driven node on a TCP socket, to say exactly what a real node might say."""

    def __init__(self, port: int) -> None:
        self.reader_writer = None
        self.port = port
        self.frames = FrameReader()
        self.seq = 0
        self.queue = []
        self.auth = None  # LinkAuth once challenged: frames after WELCOME carry a MAC

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def send(self, msg_type, payload):
        self.writer.write(encode_frame(msg_type, payload, self.seq, validate=False,
                                       auth=self.auth))
        self.seq += 1

    async def recv(self):
        """The next frame other than a HEARTBEAT; None once the master closed the link."""
        while True:
            while self.queue:
                frame = self.queue.pop(0)
                if frame.type != MsgType.HEARTBEAT:
                    return frame
            data = await self.reader.read(65536)
            if not data:
                return None
            self.queue.extend(self.frames.feed(data))

    def hello(self, node_id="raw", version=PROTOCOL_VERSION, nonce=b"n" * 16, threads=None):
        self.nonce = nonce
        self.node_id = node_id
        self.send(MsgType.HELLO, build(
            MsgType.HELLO, node_id=node_id, board="unix", fw_version="t",
            proto_version=version, kernels=["echo", "sleep_ms"], heap_total=1 << 20,
            heap_free=1 << 20, max_frame=4096, slots=2, nonce=nonce, link="tcp",
            threads=threads, kernel_hashes={k: msw_boot.hello_fields()["kernel_hashes"][k]
                                            for k in ("echo", "sleep_ms")}))

    async def join(self, key=KEY, threads=None):
        self.hello(threads=threads)
        challenge = await self.recv()
        assert challenge.type == MsgType.AUTH_CHALLENGE
        mac = node_mac(key, bytes(challenge.payload[0]), self.nonce, self.node_id)
        self.send(MsgType.AUTH_RESPONSE, build(MsgType.AUTH_RESPONSE, mac=mac))
        self.auth = self.frames.auth = LinkAuth.node(key, bytes(challenge.payload[0]),
                                                     self.nonce)
        return await self.recv()


def test_mixed_links_give_the_reference_result():
    async def main():
        async with master() as m:
            await m.add_inproc_nodes(2, via="mem")
            await m.add_inproc_nodes(2, via="tcp", prefix="tcp")
            infos = await m.wait_for_nodes(4, 10)
            assert sorted(i.link for i in infos) == ["mem", "mem", "tcp", "tcp"]
            tasks = mandel_tasks()
            handle = m.submit("mandelbrot", tasks)
            results = await handle
            assert results == [kernels.mandelbrot(*t) for t in tasks]
            assert len({n for n in handle.nodes}) >= 2
            assert m.scheduler.duplicates == 0
            echo = await m.run("echo", [[{"a": [1, 2.5, None]}], [b"\x00\x01"], ["text"]])
            assert echo == [{"a": [1, 2.5, None]}, b"\x00\x01", "text"]

    run(main())


def test_echo_runs_on_the_nodes_loop_and_other_kernels_on_its_threads():
    """As on a board (firmware/worker.py INLINE), an in-process node answers echo on its
    event loop, right after the TASK, without a thread's round trip; other kernels still
    run on its kernel threads. Here the threads refuse work: echo is answered all the same,
    including tasks queued behind one another in the node's slots."""

    class NoThreads(concurrent.futures.Executor):
        submitted = 0

        def submit(self, fn, /, *args, **kwargs):
            NoThreads.submitted += 1
            raise RuntimeError("no thread for this kernel")

    async def main():
        async with master() as m:
            node, far = InprocNode.memory_pair("n1", KEY, slots=2, executor=NoThreads())
            m.attach(far)
            await m.wait_for_nodes(1, 10)
            assert await m.run("echo", [[i] for i in range(50)]) == list(range(50))
            assert NoThreads.submitted == 0
            with pytest.raises(JobFailedError):
                await m.run("mandelbrot", mandel_tasks()[:1], timeout=5)
            assert NoThreads.submitted > 0
            await node.stop()

    run(main())


def test_large_args_travel_as_chunks():
    async def main():
        async with master(max_frame=1024) as m:
            await m.add_inproc_nodes(1, via="tcp")
            await m.wait_for_nodes(1, 10)
            blob = os.urandom(20000)
            (digest,) = await m.run("sha256", [[blob]])
            import hashlib
            assert digest == hashlib.sha256(blob).digest()
            (back,) = await m.run("echo", [[blob]])  # the RESULT comes back in CHUNKs too
            assert back == blob
            (info,) = m.nodes
            assert info.bytes_in > 20000 and info.bad_frames == 0

    run(main())


def test_wrong_key_and_bad_version_refused_others_served():
    async def main():
        async with master() as m:
            await m.add_inproc_nodes(1, via="tcp")
            intruder = InprocNode("intruder", b"wrong key")
            await intruder.connect_tcp("127.0.0.1", m.tcp_port)
            raw = RawNode(m.tcp_port)
            await raw.open()
            reply = await raw.join(key=b"also wrong")
            assert reply.type == MsgType.ERROR
            assert reply.payload[0] == ErrorCode.AUTH_FAILED
            assert "wrong cluster key" in reply.payload[1]
            assert await raw.recv() is None  # closed after the refusal
            old = RawNode(m.tcp_port)
            await old.open()
            old.hello(version=PROTOCOL_VERSION + 1)
            reply = await old.recv()
            assert reply.type == MsgType.ERROR and reply.payload[0] == ErrorCode.BAD_VERSION
            assert await m.run("echo", [[i] for i in range(50)]) == list(range(50))
            assert [n.node_id for n in m.nodes] == ["py1"]
            await intruder.stop()

    run(main())


def test_spec_refusals_on_tcp_one_error_with_ref_seq_then_closed():
    """SPEC section 2 check 3 with the negotiated max_frame (fatal on TCP), a bad header
    version (exactly one ERROR), a malformed HELLO (ERROR, then the link closes), a message
    in the wrong direction (UNEXPECTED, the link stays)."""
    async def errors_then_eof(raw):
        codes = []
        while (frame := await raw.recv()) is not None:
            codes.append((frame.payload[0], frame.payload.get(2)))
        return codes

    async def main():
        async with master() as m:
            raw = RawNode(m.tcp_port)
            await raw.open()
            assert (await raw.join()).type == MsgType.WELCOME  # HELLO max_frame 4096
            raw.send(MsgType.TASK, {0: 1, 1: "echo", 2: []})
            reply = await raw.recv()
            assert (reply.payload[0], reply.payload[2]) == (ErrorCode.UNEXPECTED, 2)
            raw.seq = 40
            raw.send(MsgType.LOG, {0: 1, 1: "x" * 5000})
            assert await errors_then_eof(raw) == [(ErrorCode.TOO_LARGE, 40)]

            old = RawNode(m.tcp_port)
            await old.open()
            frame = bytearray(encode_frame(MsgType.HEARTBEAT, {0: 1}, 7))
            frame[0] = PROTOCOL_VERSION + 1
            old.writer.write(bytes(frame))
            assert await errors_then_eof(old) == [(ErrorCode.BAD_VERSION, 7)]

            bad = RawNode(m.tcp_port)
            await bad.open()
            bad.seq = 3
            bad.send(MsgType.HELLO, build(MsgType.HELLO, node_id="x", board="unix"))
            assert await errors_then_eof(bad) == [(ErrorCode.BAD_PAYLOAD, 3)]
            assert len(m.refusals) == 2 and m.stats["bad_frames"] == 4

    run(main())


def test_bad_frames_counted_and_answered_link_kept():
    async def main():
        async with master() as m:
            raw = RawNode(m.tcp_port)
            await raw.open()
            welcome = await raw.join()
            assert welcome.type == MsgType.WELCOME
            frame = bytearray(encode_frame(MsgType.HEARTBEAT, {0: 1}, 9))
            frame[-1] ^= 0xFF  # break the CRC
            raw.writer.write(bytes(frame))
            reply = await raw.recv()
            assert reply.type == MsgType.ERROR and reply.payload[0] == ErrorCode.BAD_CRC
            assert reply.payload[2] == 9
            await asyncio.sleep(0.05)
            (info,) = m.nodes
            assert info.bad_frames == 1
            # the link is still up: a task reaches the node
            handle = m.submit("echo", [["still here"]])
            task = await raw.recv()
            assert task.type == MsgType.TASK and task.payload[1] == "echo"
            raw.send(MsgType.RESULT, {0: task.payload[0], 1: task.payload[2][0], 3: 5})
            assert await handle == ["still here"]

    run(main())


def test_node_lost_mid_job_completes_exactly_once():
    async def main():
        async with master(heartbeat_ms=100) as m:
            await m.add_inproc_nodes(2, via="tcp")
            silent = RawNode(m.tcp_port)  # joins, takes tasks, never answers again
            await silent.open()
            # threads: it says it heartbeats during kernels, so its silence is loss
            assert (await silent.join(threads=True)).type == MsgType.WELCOME
            await m.wait_for_nodes(3, 10)
            handle = m.submit("sleep_ms", [[5]] * 40)
            got_task = await silent.recv()
            assert got_task.type == MsgType.TASK
            results = await handle
            assert results == [5] * 40
            assert "raw" not in [n.node_id for n in m.nodes]
            assert m.scheduler.duplicates == 0
            assert handle.nodes.count("raw") == 0

    run(main())


def test_node_without_threads_silent_in_a_task_is_caught_by_the_deadline():
    """A node that runs kernels on its link's thread cannot heartbeat during one: silence
    while it holds a task is not loss; the task's deadline requeues it elsewhere and the
    node gets a CANCEL."""
    async def main():
        async with master(heartbeat_ms=100, task_deadline_min_s=1.0) as m:
            busy = RawNode(m.tcp_port)
            await busy.open()
            assert (await busy.join()).type == MsgType.WELCOME
            handle = m.submit("sleep_ms", [[5]])
            task = await busy.recv()
            assert task.type == MsgType.TASK
            await m.add_inproc_nodes(1, via="mem")
            await asyncio.sleep(0.6)  # 6 heartbeat intervals of silence
            assert "raw" in [n.node_id for n in m.nodes]
            assert await handle == [5]
            cancel = await busy.recv()
            assert cancel.type == MsgType.CANCEL and cancel.payload[0] == task.payload[0]
            assert handle.nodes == ["py1"]

    run(main())


def test_kill_node_link_mid_job():
    async def main():
        async with master() as m:
            nodes = await m.add_inproc_nodes(3, via="tcp")
            await m.wait_for_nodes(3, 10)
            handle = m.submit("sleep_ms", [[10]] * 60)
            while handle.done < 10:
                await asyncio.sleep(0.01)
            await nodes[0].stop()
            assert await handle == [10] * 60
            assert m.scheduler.duplicates == 0

    run(main())


def test_failing_kernel_fails_the_job_with_the_cause():
    async def main():
        async with master(retries=2) as m:
            await m.add_inproc_nodes(2)
            await m.wait_for_nodes(2, 10)
            # wrong arguments fail the same way everywhere: BAD_ARGS, the node's check names
            # the argument, and the job fails at once, no retry on the other node
            with pytest.raises(JobFailedError, match=r"task 0 \(dot\) bad arguments: "
                               r"ValueError: dot: argument a must be tarray:bhf, got str"):
                await m.run("dot", [["not", "arrays"]])
            assert sum(s["failed"] for s in m.scheduler.node_stats().values()) == 1
            with pytest.raises(ValueError, match="no node has kernel 'no_such_kernel'"):
                m.submit("no_such_kernel", [[1]])
            with pytest.raises(ValueError, match="larger than any node accepts"):
                m.submit("echo", [[bytes(2 << 20)]])
            assert await m.run("echo", [[1]]) == [1]

    run(main())


def test_cancel_and_priorities():
    async def main():
        async with master() as m:
            await m.add_inproc_nodes(1, slots=1)
            await m.wait_for_nodes(1, 10)
            slow = m.submit("sleep_ms", [[20]] * 50)
            await asyncio.sleep(0.1)
            urgent = m.submit("echo", [["now"]], priority=10)
            assert await urgent == ["now"]
            assert slow.done < 50
            m.cancel(slow)
            assert slow.state == "cancelled"
            assert await m.run("echo", [[2]]) == [2]

    run(main())


def test_journal_resume_skips_finished_tasks(tmp_path):
    journal = tmp_path / "journal.sqlite"
    tasks = [[i] for i in range(30)]

    async def first():
        async with master(journal=journal) as m:
            await m.add_inproc_nodes(1, slots=1)
            await m.wait_for_nodes(1, 10)
            handle = m.submit("sleep_ms", [[5 + (i % 2)] for i in range(30)], key="job-a")
            while handle.done < 12:
                await asyncio.sleep(0.005)
            return handle.done

    async def second():
        async with master(journal=journal) as m:
            nodes = await m.add_inproc_nodes(1, slots=1)
            await m.wait_for_nodes(1, 10)
            handle = m.submit("sleep_ms", [[5 + (i % 2)] for i in range(30)], key="job-a")
            results = await handle
            return results, nodes[0].done, handle.nodes.count("journal")

    done_before = run(first())
    results, computed, from_journal = run(second())
    assert results == [5 + (i % 2) for i in range(len(tasks))]
    assert from_journal >= done_before - 1 and from_journal >= 10
    assert computed == 30 - from_journal


def test_udp_discovery_and_control_endpoint(caplog):
    async def main():
        async with master(cluster="lab", udp_port=0, control_port=0) as m:
            await m.add_inproc_nodes(2)
            await m.wait_for_nodes(2, 10)
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                s.sendto(encode_frame(MsgType.DISCOVER, {0: "other", 1: "x"}),
                         ("127.0.0.1", m.udp_port))
                s.sendto(b"\x01garbage", ("127.0.0.1", m.udp_port))
                s.sendto(encode_frame(MsgType.DISCOVER, {0: "lab", 1: "x"}),
                         ("127.0.0.1", m.udp_port))
                # both DISCOVERs are answered with this master's name: a node asking for
                # another cluster learns why it does not join
                for _ in range(2):
                    data = await asyncio.wait_for(loop.sock_recv(s, 2048), 5)
                    announce = fields(MsgType.ANNOUNCE, decode_frame(data).payload)
                    assert announce == {"cluster": "lab", "host": "127.0.0.1",
                                        "port": m.tcp_port}
            reader, writer = await asyncio.open_connection("127.0.0.1", m.control_port)
            writer.write(b'{"cmd": "nodes"}\n{"cmd": "bogus"}\nnot json\n')
            answer = json.loads(await reader.readline())
            assert sorted(n["node_id"] for n in answer["nodes"]) == ["py1", "py2"]
            assert "unknown command" in json.loads(await reader.readline())["error"]
            assert "bad request" in json.loads(await reader.readline())["error"]
            writer.close()

    with caplog.at_level("WARNING", logger="microswarm"):
        run(main())
    told = [r.getMessage() for r in caplog.records if "discovery" in r.getMessage()]
    assert len(told) == 1 and "'other'" in told[0] and "'lab'" in told[0], told


def test_a_stalled_master_does_not_declare_nodes_lost():
    async def main():
        async with master(heartbeat_ms=50) as m:
            await m.add_inproc_nodes(2)
            await m.wait_for_nodes(2, 10)
            # a kernel that holds the shared event loop for 6 heartbeat intervals
            (hits,) = await m.run("monte_carlo_pi", [[1, 150_000]])
            assert hits == kernels.monte_carlo_pi(1, 150_000)
            await asyncio.sleep(0.2)
            assert len(m.nodes) == 2

    run(main())
