"""The synchronous Cluster facade, the split helpers and the cluster file."""

from __future__ import annotations

import array
import random
import re

import pytest

from microswarm.firmware import kernels
from microswarm.master import BlockMatmul, Cluster, ClusterFileError, Tiles2D
from microswarm.master.config import load

pytestmark = pytest.mark.timeout(60)


def test_tiles_cover_the_image_once_and_assemble_back():
    tiles = Tiles2D(10, 7, (4, 3))
    assert len(tiles) == 3 * 3
    covered = [0] * 70
    for t in tiles:
        for y in range(t.y, t.y + t.h):
            for x in range(t.x, t.x + t.w):
                covered[y * 10 + x] += 1
    assert covered == [1] * 70
    image = list(range(70))
    parts = [[image[(t.y + r) * 10 + t.x + c] for r in range(t.h) for c in range(t.w)]
             for t in tiles]
    assert list(tiles.assemble(parts)) == image
    owners = tiles.owner_map([f"n{t.index}" for t in tiles])
    assert owners[0] == "n0" and owners[69] == "n8" and owners[4] == "n1"
    with pytest.raises(ValueError):
        tiles.assemble([[0]] * len(tiles))


def test_block_matmul_matches_the_whole_product():
    rng = random.Random(5)
    m, k, n = 7, 9, 5
    a = array.array("b", [rng.randint(-128, 127) for _ in range(m * k)])
    b = array.array("b", [rng.randint(-128, 127) for _ in range(k * n)])
    split = BlockMatmul(a, b, m, k, n, block=4)
    parts = [kernels.matmul(*t) for t in split.tasks()]
    assert split.assemble(parts) == list(kernels.matmul(a, b, m, k, n))


def test_cluster_submit_map_and_progress():
    with Cluster(inproc=3) as cluster:
        assert cluster.submit("echo", 42).result(10) == 42
        args = [(seed, 2000) for seed in range(12)]
        assert cluster.map("monte_carlo_pi", args, progress=True) == [
            kernels.monte_carlo_pi(*a) for a in args
        ]
        seen = []
        handle = cluster.submit_job("sleep_ms", [[1]] * 20)
        assert cluster.wait(handle, lambda d, t: seen.append((d, t))) == [1] * 20
        assert seen[-1] == (20, 20)
        assert sorted(n.node_id for n in cluster.nodes()) == ["py1", "py2", "py3"]


def test_cluster_file(tmp_path):
    (tmp_path / "k.key").write_bytes(b"0123456789abcdef 0123456789abcdef\n")  # hex text
    path = tmp_path / "c.toml"
    path.write_text("""
[cluster]
name = "lab"
key_file = "k.key"
[master]
tcp_port = 0
udp_port = 0
journal = "j.sqlite"
[serial]
ports = ["/dev/ttyACM0"]
[boards]
expected_tcp = 2
[[virtual]]
count = 3
link = "serial"
[inproc]
count = 2
""")
    spec = load(path)
    assert spec.name == "lab" and spec.key == bytes.fromhex("0123456789abcdef" * 2)
    assert spec.tcp_port == 0 and spec.journal == str(tmp_path / "j.sqlite")
    assert spec.expected_nodes == 2 + 1 + 3 + 2
    assert spec.virtual[0].link == "serial"
    path.write_text('[cluster]\nkey = "short"\n')
    with pytest.raises(ClusterFileError, match="at least 16 bytes"):
        load(path)
    path.write_text('[cluster\n')
    with pytest.raises(ClusterFileError):
        load(path)


@pytest.mark.parametrize("line, says", [
    ("udp_port = 458810", "udp_port = 458810: a port is a whole number from 0"),
    ("tcp_port = -1", "tcp_port = -1: a port"),
    ("tcp_port = false", "tcp_port = False: a port"),
    ('control_port = "5882"', "control_port = '5882': a port"),
    ('client = "127.0.0.1:458830"', "client = '127.0.0.1:458830': must be \"HOST:PORT\""),
    ('http = "5884"', "http = '5884': must be"),
])
def test_a_port_out_of_range_is_named_before_anything_binds(tmp_path, line, says):
    path = tmp_path / "c.toml"
    path.write_text(f'[cluster]\nkey = "{"k" * 16}"\n[master]\n{line}\n')
    with pytest.raises(ClusterFileError, match=re.escape(says)):
        load(path)


def test_udp_and_control_ports_may_be_switched_off(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'[cluster]\nkey = "{"k" * 16}"\n[master]\nudp_port = false\n'
                    'control_port = false\nclient = false\n')
    spec = load(path)
    assert (spec.udp_port, spec.control_port, spec.client) == (None, None, None)


def test_example_cluster_file_loads(repo):
    spec = load(repo / "examples" / "demo.toml")
    assert spec.virtual and spec.inproc >= 1
