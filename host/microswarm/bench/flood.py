"""A joined peer flooding the master: how much it slows the other nodes' jobs.

A master with two in-process nodes runs a job of `--tasks` echo tasks three ways, in
turns, `--rounds` times: alone; while a peer process that joined with the cluster key
pours bad-CRC frames as fast as TCP lets it (a good HEARTBEAT after every 4,095, so it
stays alive); and while such a peer pours valid, MAC-sealed HEARTBEATs instead, the
traffic of a legitimate but chatty node. Each way's best job time is kept. Headline: best
job time during the bad-frame flood over the quiet one (goal <= 2x, issue 15); baseline:
the same ratio for the valid-frame flood. Every bad frame is counted (`bad_frames_counted`
equals what the peer sent) and the warnings logged stay within the rate limit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import subprocess
import sys
import time
from typing import Any

KEY = b"bench flood cluster key"
BATCH = 4095  # bad frames per write, then one good HEARTBEAT
VALID_FRAMES = 60_000  # sealed in advance, so the peer's own cost is the same either way


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=500, help="echo tasks per job")
    parser.add_argument("--rounds", type=int, default=3, help="jobs per side; best kept")


async def _job(master, tasks: int) -> float:
    started = time.perf_counter()
    out = await master.run("echo", [[i] for i in range(tasks)])
    assert out == list(range(tasks)), "echo job returned wrong results"
    return time.perf_counter() - started


async def _flooded(master, tasks: int, kind: str) -> tuple[float, int]:
    """One echo job while a peer process floods: (job seconds, frames the peer sent)."""
    peer = subprocess.Popen(
        [sys.executable, "-m", "microswarm.bench.flood", str(master.tcp_port), kind],
        stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.to_thread(peer.stdout.readline)
        if line.strip() != "joined":
            raise RuntimeError(f"flood peer did not join: {line!r}")
        await asyncio.sleep(0.2)  # the flood under way
        took = await _job(master, tasks)
    finally:
        peer.terminate()
        out = await asyncio.to_thread(peer.stdout.read)
        peer.wait()
    return took, int(out.split()[-1])


async def _measure(args) -> dict[str, Any]:
    from microswarm.master import Master
    from microswarm.master.ratelog import BURST, LINES_PER_S

    lines: list[logging.LogRecord] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "bad frame" in record.getMessage():
                lines.append(record)

    handler = Count(logging.WARNING)
    logger = logging.getLogger("microswarm.master.master")
    logger.addHandler(handler)
    logger.propagate = False  # counted here, not printed
    times: dict[str, list[float]] = {"quiet": [], "bad": [], "valid": []}
    sent = {"bad": 0, "valid": 0}
    try:
        async with Master(key=KEY, tcp_port=0, udp_port=None) as master:
            await master.add_inproc_nodes(2)
            await master.wait_for_nodes(2, 10)
            await _job(master, args.tasks)  # warm up
            started = time.monotonic()
            for _ in range(args.rounds):  # in turns: a burst of other work costs all alike
                times["quiet"].append(await _job(master, args.tasks))
                for kind in ("bad", "valid"):
                    took, frames = await _flooded(master, args.tasks, kind)
                    times[kind].append(took)
                    sent[kind] += frames
            elapsed = time.monotonic() - started
            counted = master.stats["bad_frames"]
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return {"job_s": times, "bad_frames_sent": sent["bad"], "bad_frames_counted": counted,
            "valid_frames_sent": sent["valid"], "log_lines": len(lines),
            "log_limit": int(BURST + LINES_PER_S * elapsed + 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = asyncio.run(_measure(args))
    best = {kind: min(times) for kind, times in out["job_s"].items()}
    out["headline"] = {
        "name": "echo job time during a bad-frame flood over without",
        "value": round(best["bad"] / best["quiet"], 3), "unit": "x",
        "baseline": round(best["valid"] / best["quiet"], 3)}
    return out


def _peer(port: int, kind: str) -> None:
    """The flooding peer: join, say "joined", pour until terminated, print frames sent."""
    import signal

    from microswarm.master.messages import build
    from microswarm.protocol.catalog import PROTOCOL_VERSION, MsgType
    from microswarm.wire import FrameReader, LinkAuth, encode_frame, node_mac

    nonce = b"f" * 16
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(encode_frame(MsgType.HELLO, build(
        MsgType.HELLO, node_id="flood", board="unix", fw_version="bench",
        proto_version=PROTOCOL_VERSION, kernels=[], heap_total=1 << 20, heap_free=1 << 20,
        max_frame=65546, slots=1, nonce=nonce, link="tcp", max_message=1 << 20), 0))
    frames, auth, seq, welcomed = FrameReader(), None, 2, False
    while not welcomed:
        for f in frames.feed(sock.recv(65536)):
            if f.type == MsgType.AUTH_CHALLENGE:
                challenge = bytes(f.payload[0])
                sock.sendall(encode_frame(MsgType.AUTH_RESPONSE, {
                    0: node_mac(KEY, challenge, nonce, "flood")}, 1))
                auth = frames.auth = LinkAuth.node(KEY, challenge, nonce)
            elif f.type == MsgType.WELCOME:
                welcomed = True
    if kind == "bad":
        bad = bytearray(encode_frame(MsgType.HEARTBEAT, {0: 1}, 9))
        bad[-1] ^= 0xFF
        part = bytes(bad) * BATCH
    else:
        sealed = [encode_frame(MsgType.HEARTBEAT, {0: 1}, seq + i, auth=auth)
                  for i in range(VALID_FRAMES)]
    sent = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("joined", flush=True)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
    while not stop:
        if kind == "bad":
            sock.sendall(part + encode_frame(MsgType.HEARTBEAT, {0: 1}, seq, auth=auth))
            seq += 1
            sent += BATCH
        elif sent < VALID_FRAMES:
            sock.sendall(b"".join(sealed[sent:sent + BATCH]))
            sent = min(sent + BATCH, VALID_FRAMES)
        else:
            time.sleep(0.01)
    # closing with the master's frames unread would reset the link and drop what the
    # master has not read yet: end our side, read until the master closes it
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(30)
    while sock.recv(65536):
        pass
    print("sent", sent, flush=True)


if __name__ == "__main__":
    _peer(int(sys.argv[1]), sys.argv[2])
