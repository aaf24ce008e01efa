"""Simulated nodes speak as boards do: HELLO from firmware/engine.py's hello() with the
kernels' version hashes (and the simulator's master pins a job to the version of its
kernel as the real master does: a node reporting another version gets none of its tasks),
and their messages framed as the firmware frames them (chunks over the frame limit)."""

from __future__ import annotations

from microswarm.firmware import kernels, msw_boot  # noqa: F401 (kernels: its import registers them)
from microswarm.master.master import resolve_version
from microswarm.sim import node, scenario
from microswarm.sim.cluster import Simulation


def test_a_node_with_another_kernel_version_gets_no_task():
    sim = Simulation(scenario.parse({
        "duration_s": 60,
        "master": {"heartbeat_ms": 200, "window": 2},
        "nodes": [{"count": 4, "prefix": "n", "link": "eth100"}],
        "job": {"kind": "synthetic", "tasks": 80, "task_ms": 5},
    }))
    kernel = sim.job.kernel
    here = msw_boot.hello_fields()["kernel_hashes"]
    assert here[kernel] == resolve_version(kernel, None)
    stale = sim.node_by_id["n2"]
    stale.kernel_about = {**sim.kernel_about,
                          "kernel_hashes": {**here, kernel: "0000000000000000"}}
    report = sim.run()
    assert report["result"]["verified"], report["result"]
    hashes = {s.info.node_id: s.info.kernel_hashes for s in sim.master.sessions}
    assert hashes["n0"] == here and hashes["n2"][kernel] == "0000000000000000"
    assert stale.done == 0
    assert sum(sim.node_by_id[n].done for n in ("n0", "n1", "n3")) == 80


def test_a_result_larger_than_a_frame_goes_as_chunks_as_from_a_board():
    """A simulated node frames its RESULT as the firmware does (wire/writer.py): a tile of
    20,000 bytes goes as CHUNKs under the 16 KB frame limit, and the master reassembles it."""
    sim = Simulation(scenario.parse({
        "duration_s": 60,
        "master": {"heartbeat_ms": 200, "window": 1},
        "nodes": [{"count": 2, "prefix": "n", "link": "eth100"}],
        "job": {"kind": "mandelbrot", "width": 200, "height": 100, "tile": 100,
                "max_iter": 8},
    }))
    assert node.MAX_FRAME < 2 * 100 * 100  # a simulated node's frame limit (its HELLO)
    report = sim.run()
    assert report["result"]["verified"], report["result"]
    assert report["detections"] == [] and report["result"]["lost"] == 0
