"""Scenario files: the shipped ones load; mistakes give a ScenarioError naming the key."""

from __future__ import annotations

import pytest

from microswarm.sim import jobs, scenario
from microswarm.sim.scenario import ScenarioError

BASE = {
    "nodes": [{"count": 2, "prefix": "n"}],
    "job": {"kind": "synthetic", "tasks": 4},
}


def test_every_shipped_scenario_loads(repo):
    files = sorted((repo / "scenarios").glob("*.toml"))
    assert len(files) >= 6
    for path in files:
        s = scenario.load(path)
        assert s.node_count >= 1 and s.name == path.stem
        assert jobs.build(s.job, s.seed).tasks


def test_defaults():
    s = scenario.parse(BASE)
    assert s.seed == 1 and s.master.heartbeat_ms == 1000
    assert s.groups[0].link == "uart115200" and s.groups[0].board == "rp2350"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sede": 3}, "unknown keys \\['sede'\\]"),
        ({"nodes": [{"count": 1, "link": "carrier-pigeon"}]}, "unknown link"),
        ({"nodes": [{"count": 1, "board": "abacus"}]}, "unknown board"),
        ({"nodes": [{"count": 1, "link": "eth100", "corrupt": 0.1}]}, "serial"),
        ({"nodes": [{"count": 0}]}, "count and slots"),
        ({"nodes": [{"count": "3"}]}, "wrong type"),
        ({"nodes": []}, "at least one"),
        ({"job": {"kind": "sudoku"}}, "kind must be one of"),
        ({"faults": [{"kind": "meteor", "at_s": 1}]}, "kind must be one of"),
        ({"faults": [{"kind": "crash", "at_s": 1}]}, "exactly one of"),
        ({"faults": [{"kind": "crash", "at_s": [3, 1], "count": 1}]}, "window"),
        ({"faults": [{"kind": "restart_master", "at_s": 1, "count": 1}]}, "no nodes"),
        ({"faults": [{"kind": "straggler", "at_s": 1, "count": 1, "factor": 0.5}]}, ">= 1"),
        ({"master": {"window": 0}}, "must be > 0"),
    ],
)
def test_mistakes_are_named(change, message):
    with pytest.raises(ScenarioError, match=message):
        scenario.parse({**BASE, **change})


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ScenarioError, match="bad.toml"):
        scenario.load(bad)


def test_job_errors():
    with pytest.raises(jobs.JobError, match="width"):
        jobs.build({"kind": "mandelbrot", "height": 3}, 1)
    with pytest.raises(jobs.JobError):
        jobs.build({"kind": "synthetic", "tasks": 0}, 1)


def test_jobs_assemble_to_their_reference():
    """Split, run each task directly, assemble: equal to the one-call reference."""
    from microswarm.firmware import kernels
    from microswarm.master.operands import inline

    for spec in (
        {"kind": "mandelbrot", "width": 37, "height": 21, "tile": 8, "max_iter": 40},
        {"kind": "matmul", "m": 9, "k": 5, "n": 7, "rows_per_task": 4},
        {"kind": "synthetic", "tasks": 5, "task_ms": 100, "spread": 0.5},
    ):
        job = jobs.build(spec, seed=4)
        parts = [kernels.run(job.kernel, inline(args)) for args in job.tasks]  # B shared
        assert job.assemble(parts) == job.reference()
        parts[0] = parts[-1]
        assert job.assemble(parts) != job.reference()
