"""Same scenario and seed, same trace; another seed, another trace."""

from __future__ import annotations

from microswarm.sim import scenario
from microswarm.sim.cluster import Simulation

NOISY = {
    "name": "noisy",
    "duration_s": 120,
    "master": {"heartbeat_ms": 200, "window": 2},
    "nodes": [
        {"count": 12, "prefix": "u", "link": "uart115200", "loss": 0.03, "corrupt": 0.03,
         "jitter_ms": 2},
        {"count": 6, "prefix": "e", "link": "w5500_spi20", "board": "esp32", "loss": 0.02},
    ],
    "job": {"kind": "mandelbrot", "width": 96, "height": 64, "tile": 8, "max_iter": 96},
    "faults": [
        {"kind": "crash", "count": 2, "at_s": [0.3, 0.5], "restart_after_s": 0.5},
        {"kind": "freeze", "nodes": ["e1"], "at_s": 0.4, "duration_s": 1.0},
        {"kind": "straggler", "nodes": ["u3"], "at_s": 0, "factor": 5},
    ],
}


def run(seed):
    return Simulation(scenario.parse(NOISY), seed=seed).run()


def test_same_seed_same_trace_and_report():
    first, second = run(5), run(5)
    assert first["result"]["verified"]
    assert first["trace_events"] > 300
    assert first["links"]["corrupted"] > 0 and first["detections"]
    assert first["trace_sha256"] == second["trace_sha256"]
    for report in (first, second):
        report.pop("wall_s")
        report.pop("speedup")
    assert first == second


def test_other_seed_other_trace():
    a, b = run(5), run(6)
    assert b["result"]["verified"]
    assert a["trace_sha256"] != b["trace_sha256"]


def test_trace_file_lists_every_hashed_event(tmp_path):
    path = tmp_path / "trace.txt"
    report = Simulation(scenario.parse(NOISY), seed=5, trace_file=str(path)).run()
    lines = path.read_text().splitlines()
    assert len(lines) == report["trace_events"]
    kinds = {line.split()[1] for line in lines}
    assert {"join", "dispatch", "ran", "done", "fault", "bad_frame", "job_done"} <= kinds
    times = [float(line.split()[0]) for line in lines]
    assert times == sorted(times)


def test_trace_hash_depends_on_values_not_on_object_identity():
    """Equal events hash equally whether their objects are shared (a refcount above one)
    or fresh each time; the master-restart scenario once hashed differently run to run."""
    shared, fresh = (Simulation(scenario.parse(NOISY), seed=5) for _ in range(2))
    node_id, detail = "u1", (7, "ok")
    for _ in range(100):
        shared.trace("ran", node_id, detail)
        fresh.trace("ran", "".join(["u", "1"]), (int("7"), "".join(["o", "k"])))
    for sim in (shared, fresh):
        sim.close()
    assert shared.trace_hash() == fresh.trace_hash()
