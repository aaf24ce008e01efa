"""Local nodes: CPython processes on this machine, each running the node engine and the
firmware's kernels, joined to the master over TCP loopback like any board.

Each process is one node (`python -m microswarm.master.local`): the in-process node
(inproc.py) in an event loop of its own, so N local nodes compute on N cores at once.
A node dials again with the firmware's backoff when its session ends, and exits when the
process that started it goes away. The cluster key reaches it through its environment,
never its command line.

    Cluster(local=2)  ·  microswarm master --local 2  ·  [local] count = 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sys

from microswarm.firmware import engine as E

log = logging.getLogger(__name__)

KEY_ENV = "MICROSWARM_NODE_KEY"  # the cluster key, hex
SLOTS = 2  # one kernel computing, one waiting: the core never idles between tasks
STOP_GRACE_S = 5.0


class LocalNodes:
    """The local node processes of one master."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, count: int, host: str, port: int, key: bytes, *,
                    prefix: str = "local", slots: int = SLOTS,
                    kernels: list[str] | tuple = ()) -> list[str]:
        """Start `count` nodes dialling host:port; returns their node ids. `kernels`:
        kernel package folders each node loads (kernelpkg.load) before it dials."""
        env = dict(os.environ, **{KEY_ENV: key.hex()})
        ids = []
        first = len(self.procs)
        for i in range(count):
            node_id = f"{prefix}{first + i + 1}"
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "microswarm.master.local", "--master", f"{host}:{port}",
                "--node-id", node_id, "--slots", str(slots),
                *[arg for folder in kernels for arg in ("--kernels", str(folder))], env=env,
                stdin=asyncio.subprocess.DEVNULL)
            self.procs.append(proc)
            ids.append(node_id)
        return ids

    async def stop(self) -> None:
        procs, self.procs = self.procs, []
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def _die_with_parent() -> None:
    """SIGTERM when the parent goes, however it goes (Linux; elsewhere the loop below
    notices the parent's change)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def serve(host: str, port: int, node_id: str, key: bytes, slots: int) -> None:
    from microswarm.master.inproc import InprocNode

    parent = os.getppid()
    backoff = E.BACKOFF_MIN_MS
    while os.getppid() == parent:
        node = InprocNode(node_id, key, slots=slots)
        try:
            await node.connect_tcp(host, port)
        except OSError as exc:
            log.info("%s: cannot reach the master at %s:%d: %s", node_id, host, port, exc)
        else:
            await node.ended.wait()
            if node.joined.is_set():
                backoff = E.BACKOFF_MIN_MS
        finally:
            await node.stop()
        wait, backoff = E.backoff(backoff, random.random())
        await asyncio.sleep(wait / 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m microswarm.master.local",
                                     description="one local CPython node")
    parser.add_argument("--master", required=True, metavar="HOST:PORT")
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--slots", type=int, default=SLOTS)
    parser.add_argument("--kernels", action="append", default=[], metavar="DIR",
                        help="a kernel package folder to load (repeatable)")
    args = parser.parse_args(argv)
    if args.kernels:
        from microswarm import kernelpkg

        kernelpkg.load(args.kernels)
    try:
        key = bytes.fromhex(os.environ[KEY_ENV])
    except (KeyError, ValueError):
        parser.error(f"the cluster key must be in ${KEY_ENV} (hex)")
    host, _, port = args.master.rpartition(":")
    logging.basicConfig(level=logging.WARNING, format=f"{args.node_id}: %(message)s")
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        asyncio.run(serve(host, int(port), args.node_id, key, args.slots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
