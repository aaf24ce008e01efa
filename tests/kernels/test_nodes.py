"""A kernel package on every kind of node the master sees, and versions in placement: a
node with another version of a kernel is never used for a job that names the version."""

from __future__ import annotations

import array
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from microswarm import kernelpkg
from microswarm.master import Cluster, Master
from microswarm.master.client import RemoteError
from microswarm.vboard import VirtualBoard

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "kernels"
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
CLI = [sys.executable, "-m", "microswarm.cli"]
EIGHTHS = array.array("I", [128] * 8)


def stale_copy(tmp_path: Path) -> Path:
    """The example package as it was before an edit: another version of `histogram`."""
    old = tmp_path / "kernels"
    shutil.copytree(EXAMPLES, old, ignore=shutil.ignore_patterns("build"))
    source = old / "histogram.py"
    source.write_text(source.read_text().replace("bins must be 1..256", "bins: 1..256"))
    return old


def test_a_stale_node_is_never_used_and_an_explicit_version_picks_it(tmp_path):
    (current,) = kernelpkg.load([EXAMPLES])
    new = current.hashes()["histogram"]
    old_pkg = stale_copy(tmp_path)
    old = kernelpkg.find(old_pkg).hashes()["histogram"]
    assert old != new
    tile = bytes(range(256)) * 4  # 1,024 bytes, 128 in each of 8 bins

    async def main():
        async with Master(key=KEY, tcp_port=0, udp_port=None, heartbeat_ms=500) as m:
            await m.add_inproc_nodes(1)
            boards = [VirtualBoard(link="tcp", node_id=f"vb-{v}", key=KEY,
                                   master=f"127.0.0.1:{m.tcp_port}", kernels=[pkg],
                                   cluster="microswarm")
                      for v, pkg in (("old", old_pkg), ("new", EXAMPLES))]
            await asyncio.gather(*(asyncio.to_thread(b.start) for b in boards))
            try:
                await m.wait_for_nodes(3, 30)
                versions = {i.node_id: i.kernel_hashes.get("histogram") for i in m.nodes}
                assert versions == {"py1": new, "vb-new": new, "vb-old": old}
                assert all(i.kernel_hashes["echo"] == kernelpkg.version("echo")
                           for i in m.nodes)
                handle = m.submit("histogram", [[tile, 8]] * 40)
                assert await handle == [EIGHTHS] * 40
                assert set(handle.nodes) == {"py1", "vb-new"}
                pinned = m.submit("histogram", [[tile, 8]] * 6, version=old)
                assert await pinned == [EIGHTHS] * 6 and set(pinned.nodes) == {"vb-old"}
                anyone = m.submit("histogram", [[tile, 8]] * 60, version="")
                assert await anyone == [EIGHTHS] * 60
                assert "vb-old" in set(anyone.nodes)
                with pytest.raises(ValueError, match="no node has kernel 'histogram' at "
                                   "version 000000000000: the nodes have py1 "):
                    m.submit("histogram", [[tile, 8]], version="000000000000")
                # arguments that do not fit: BAD_ARGS from the board, no retry elsewhere
                with pytest.raises(Exception, match="bad arguments: ValueError: histogram: "
                                   "argument bins must be uint, got str"):
                    await m.submit("histogram", [[tile, "8"]], version=old)
            finally:
                await asyncio.gather(*(asyncio.to_thread(b.stop) for b in boards))

    asyncio.run(main())


def test_vboard_cli_loads_a_package_as_its_help_shows(tmp_path):
    key_file = tmp_path / "cluster.key"
    key_file.write_text(KEY.hex() + "\n")
    shutil.copytree(EXAMPLES, tmp_path / "examples" / "kernels",
                    ignore=shutil.ignore_patterns("build"))
    command = "microswarm vboard --link serial --key-file cluster.key --kernels examples/kernels"
    assert command in (REPO / "host" / "microswarm" / "vboard" / "cli.py").read_text()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        proc.stdout.readline()
        port = re.search(r"serial port: (\S+)", proc.stdout.readline()).group(1)

        async def main():
            async with Master(key=KEY, tcp_port=None, udp_port=None, heartbeat_ms=500) as m:
                await m.open_serial(port)
                (info,) = await m.wait_for_nodes(1, 30)
                assert "histogram" in info.kernels
                version = kernelpkg.find(tmp_path / "examples" / "kernels").hashes()
                assert info.kernel_hashes["histogram"] == version["histogram"]
                values = await m.submit("histogram", [[b"\x00\x80\xff", 2]],
                                        version=version["histogram"])
                assert values == [array.array("I", [1, 2])]

        asyncio.run(main())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_master_cli_kernels_feed_its_inproc_nodes_and_nodes_shows_versions(tmp_path):
    master = subprocess.Popen(
        [*CLI, "master", "--key", "kernels-cli-key-0123", "--host", "127.0.0.1", "--port",
         "0", "--udp-port", "-1", "--control-port", "0", "--client", "127.0.0.1:0", "--http",
         "off", "--inproc", "1", "--kernels", str(EXAMPLES)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = master.stdout.readline()
        control = re.search(r"control (\d+)", first).group(1)
        client = re.search(r"client (\S+) ", first).group(1)
        answer = subprocess.run([*CLI, "nodes", "--control", f"127.0.0.1:{control}", "--json"],
                                capture_output=True, text=True, timeout=30)
        (node,) = json.loads(answer.stdout)["nodes"]
        version = kernelpkg.find(EXAMPLES).hashes()["histogram"]
        assert node["kernel_hashes"]["histogram"] == version
        table = subprocess.run([*CLI, "nodes", "--control", f"127.0.0.1:{control}"],
                               capture_output=True, text=True, timeout=30,
                               env={**os.environ, "COLUMNS": "250"})
        assert f"histogram@{version}" in table.stdout and "built-in@" in table.stdout
        # a client submits with its own version of the kernel: the package it loaded
        kernelpkg.load([EXAMPLES])
        with Cluster.connect(client, key="kernels-cli-key-0123") as cluster:
            assert cluster.map("histogram", [(b"\x00\xff", 2)]) == [array.array("I", [1, 1])]
            stale = kernelpkg.find(stale_copy(tmp_path)).hashes()["histogram"]
            with pytest.raises(RemoteError, match=f"at version {stale}"):
                cluster.map("histogram", [(b"\x00", 2)], version=stale)
    finally:
        master.send_signal(signal.SIGINT)
        master.wait(20)


def test_local_node_processes_load_the_package():
    from microswarm.master import Cluster

    (pkg,) = kernelpkg.load([EXAMPLES])
    with Cluster(local=1, kernels=[EXAMPLES]) as cluster:
        (info,) = cluster.nodes()
        assert info.kernel_hashes["histogram"] == pkg.hashes()["histogram"]
        assert cluster.map("histogram", [(b"\x00\x80\xff", 2)]) == [array.array("I", [1, 2])]
