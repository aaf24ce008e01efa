"""The board benchmark's report: figures, markdown table and latency plot; its tasks
across a session the board ended because the benchmark's process went silent."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from microswarm.bench import board as bench_board
from microswarm.bench.board import build_report, percentile, write_report
from microswarm.hil.target import BoardUnderTest


def test_report_table_plot_and_headline(tmp_path):
    latencies = [0.5 + (i % 10) * 0.01 for i in range(200)] + [3.0]
    payloads = {
        "1k": {"payload_bytes": 1024, "repeats": 2, "throughput_kB_s": 900.0,
               "efficiency": 0.97, "wire_bytes": 4222},
        "16k": {"payload_bytes": 16384, "repeats": 2, "throughput_kB_s": 950.0,
                "efficiency": 0.99, "wire_bytes": 66200},
    }
    native = {"dot": {"rate": 1000, "unit": "MAC/s", "elapsed_us": 8, "native": True}}
    pure = {"dot": {"rate": 40, "unit": "MAC/s", "elapsed_us": 200, "native": False}}
    report = build_report("unix", None, latencies, payloads, native, pure)
    assert report["headline"] == {"name": "link efficiency, 16 KB echo payloads over serial",
                                  "value": 0.99, "unit": "payload/wire", "baseline": None}
    assert report["kernels"]["dot"]["native_speedup"] == 25.0
    assert report["latency_ms"]["p99"] == percentile(latencies, 0.99) < 3.0
    write_report(tmp_path, report, latencies)
    table = (tmp_path / "report.md").read_text()
    assert "| dot | 1000 MAC/s | True | 40 | 25.0 |" in table
    with Image.open(tmp_path / "latency.png") as image:
        assert image.size == (640, 360)
        colours = {colour for _count, colour in image.getcolors(640 * 360)}
        assert (70, 110, 180) in colours  # the histogram's bars
        assert (30, 140, 60) in colours and (200, 40, 40) in colours  # median and p99 marks
        # The 3.0 ms outlier is folded into the last bar at the right edge, not drawn to scale.
        assert image.getpixel((610, 300)) == (200, 120, 60)


def test_tick_steps_are_one_two_or_five_times_a_power_of_ten():
    from microswarm.plotting import nice_step, nice_ticks, tick_label

    assert nice_ticks(0.43, 0.92, 6) == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert nice_ticks(0, 2.56, 10) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert nice_ticks(0, 3600, 10) == [float(t) for t in range(0, 3601, 500)]
    assert nice_step(37, 4) == 10 and nice_step(0.0042, 5) == 0.001
    assert tick_label(0.5, 0.1) == "0.5" and tick_label(1500, 500, "s") == "1500 s"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_task_after_the_board_ended_a_silent_session_goes_in_the_next(tmp_path):
    """The probe is one thread: while its process does not run (a loaded machine: a pause
    of 0.9 s or more was seen) it sends no HEARTBEAT, and the board, as it must, ends the
    session after 3 silent intervals and says HELLO again. Before, the probe ignored that
    HELLO and waited out the task's timeout ("no RESULT ... frame without a MAC after the
    join"); the benchmark now answers it and sends the task in the new session."""
    target = BoardUnderTest.open(board="unix", link="serial", native=False, workdir=tmp_path)
    try:
        probe = target.connect()
        assert bench_board.task(probe, "echo", [1]).get(1) == 1
        time.sleep(4 * target.heartbeat_ms / 1000)  # silent: the board ends the session
        started = time.monotonic()
        assert bench_board.task(probe, "echo", [2], timeout=30).get(1) == 2
        assert probe.rejoins == 1 and time.monotonic() - started < 20
        assert bench_board.task(probe, "echo", [3]).get(1) == 3
        probe.close()
    finally:
        target.close()
