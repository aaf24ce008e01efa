"""Local nodes: CPython node processes of their own joined over TCP loopback."""

from __future__ import annotations

import json
import subprocess
import sys

from microswarm.firmware import kernels
from microswarm.master.cluster import Cluster
from microswarm.master.config import load


def test_local_nodes_run_tasks_in_processes_of_their_own():
    calls = [[seed, 20_000] for seed in range(12)]
    with Cluster(local=2) as cluster:
        assert cluster.map("monte_carlo_pi", calls) == [kernels.monte_carlo_pi(*c) for c in calls]
        nodes = cluster.nodes()
        assert sorted(n.node_id for n in nodes) == ["local1", "local2"]
        assert all(n.link == "tcp" for n in nodes)
        assert cluster.map("echo", [[1], [2]]) == [1, 2]
    children = subprocess.run(["pgrep", "-f", "microswarm.master.local"], capture_output=True,
                              text=True).stdout.split()
    assert children == [], "local node processes end with the cluster"


def test_cluster_file_local_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[cluster]\nkey = "local-table-key-0123456789"\n[local]\ncount = 3\n')
    spec = load(path)
    assert spec.local == 3 and spec.expected_nodes == 3


def test_bench_local_reports_the_speedup_and_the_dask_baseline():
    out = subprocess.run([sys.executable, "-m", "microswarm.cli", "bench", "local", "--json",
                          "--size", "64", "--tile", "32", "--rounds", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["headline"]["value"] > 0 and report["headline"]["baseline"] > 0
    assert set(report["seconds"]) == {"local_1", "local_2", "dask_processes_2"}
    # one kernel at a time per node: kernel time never exceeds nodes x wall time
    assert all(0 < busy <= 1.01 for busy in report["kernel_busy"].values())
