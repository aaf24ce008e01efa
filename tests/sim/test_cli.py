"""`microswarm sim` end to end: text, JSON and PNG outputs; clear errors; memory per node."""

from __future__ import annotations

import json
import tracemalloc

from PIL import Image

from microswarm import cli
from microswarm.sim import scenario
from microswarm.sim.cluster import Simulation

SMALL = """
name = "small"
seed = 2
[master]
heartbeat_ms = 200
[[nodes]]
count = 6
prefix = "n"
link = "usb_fs_cdc"
[job]
kind = "mandelbrot"
width = 40
height = 24
tile = 8
max_iter = 32
[[faults]]
kind = "crash"
nodes = ["n1"]
at_s = 0.25
"""


def test_text_report_and_plot(tmp_path, capsys):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    png = tmp_path / "out.png"
    assert cli.main(["sim", str(path), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "scenario small (seed 2): 6 nodes" in out
    assert "result: OK" in out and "lost 0, duplicated 0" in out
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width >= 800
        colours = {img.getpixel((x, y)) for x in range(0, img.width, 4)
                   for y in range(30, img.height - 40, 3)}
        assert (70, 130, 180) in colours  # task bars were drawn
        legend = {img.getpixel((x, y)) for x in range(0, img.width // 2)
                  for y in range(img.height - 44, img.height)}
        assert (70, 130, 180) in legend and (200, 0, 0) in legend  # bar and crash entries


def test_timeline_axis_picks_a_readable_unit_and_step():
    from microswarm.sim.plot import time_axis

    assert time_axis(2.56) == (1.0, "s", [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert time_axis(3600.0) == (60.0, "min", [0, 10, 20, 30, 40, 50, 60])
    assert time_axis(6 * 3600.0)[:2] == (3600.0, "h")


def test_json_report_and_seed_override(tmp_path, capsys):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    assert cli.main(["sim", str(path), "--json", "--seed", "9"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["seed"] == 9 and report["result"]["verified"]
    assert "per_node" not in report["utilisation"]
    assert report["tasks"] == 15 and report["dispatches"] >= 15


def test_bad_scenario_is_exit_2_with_the_key_named(tmp_path, capsys):
    path = tmp_path / "typo.toml"
    path.write_text(SMALL.replace("count = 6", "cuont = 6"))
    assert cli.main(["sim", str(path)]) == 2
    assert "unknown keys ['cuont']" in capsys.readouterr().err
    assert cli.main(["sim", str(tmp_path / "missing.toml")]) == 2
    assert "shipped scenarios: " in capsys.readouterr().err


def test_a_stalled_job_is_reported_not_hidden(capsys, tmp_path):
    """Every node crashes for good: the run stops at duration_s and says what is missing."""
    path = tmp_path / "doom.toml"
    path.write_text(SMALL.replace('nodes = ["n1"]', "fraction = 1.0")
                    .replace("at_s = 0.25", "at_s = 0.21")
                    .replace("seed = 2", "seed = 2\nduration_s = 5"))
    assert cli.main(["sim", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "tasks lost" in out


def test_host_memory_per_node_stays_far_below_50_kb():
    spec = scenario.parse({
        "nodes": [{"count": 300, "prefix": "p", "link": "uart115200"}],
        "master": {"heartbeat_ms": 1000},
        "job": {"kind": "synthetic", "tasks": 1200, "task_ms": 20_000},
    })
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        sim = Simulation(spec, keep_gantt=False)
        sim.start()
        sim.advance(5.0)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert all(s is not None and s.joined for s in sim.master.sessions)
    assert all(n.running is not None for n in sim.nodes)
    grown = sum(d.size_diff for d in after.compare_to(before, "filename"))
    assert grown / 300 < 50_000
