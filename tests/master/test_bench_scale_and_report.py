"""`microswarm bench scale` and `microswarm bench all` on small parameters: well-formed
JSON with real figures (the goals themselves are the benchmarks' business, not the
tests'), and the README's benchmark table generated from the committed report."""

from __future__ import annotations

import json
import subprocess
import sys

from microswarm.bench import report

CLI = [sys.executable, "-m", "microswarm.cli"]


def test_bench_scale_holds_sessions_and_detects_their_loss(repo):
    proc = subprocess.run(
        [*CLI, "bench", "scale", "--json", "--sessions", "60", "--procs", "2", "--tasks", "400",
         "--stage-tasks", "100", "--matmul-tasks", "40", "--heartbeat-ms", "300"],
        capture_output=True, text=True, timeout=600, cwd=repo, check=True)
    out = json.loads(proc.stdout)
    assert out["headline"]["value"] == out["sessions_held"] == 60
    assert out["goals"]["exact"]
    assert [s["sessions"] for s in out["stages"]] == [30, 60]
    assert out["curves"]["sessions"] == [30, 60] and len(out["curves"]["rss_kb"]) == 2
    assert out["echo_full_load"]["dispatches"] >= 400
    assert out["echo_full_load"]["dispatches_per_cpu_s"] > 0
    loss = out["loss_detection"]
    assert loss["silenced"] == loss["detected"] == 30 and loss["sessions_after"] == 30
    # a silent session is lost 3 heartbeat intervals after its last frame, never before
    # (how soon after is the benchmark's figure, not a test's)
    assert loss["since_last_heard_s"]["min"] >= 3 * 0.3
    assert loss["since_last_heard_s"]["max"] >= loss["since_last_heard_s"]["min"]
    assert out["fd_limit"]["master"]["after"] >= out["fd_limit"]["master"]["before"]
    # each load generator says how many of its nodes still have their session
    assert [g["alive"] for g in out["generators"]] == [30, 30]


def test_bench_all_writes_a_report_with_the_table_and_the_machine(repo, tmp_path):
    proc = subprocess.run(
        [*CLI, "bench", "all", "--json", "--report", str(tmp_path), "--only", "codec"],
        capture_output=True, text=True, timeout=600, cwd=repo, check=True)
    out = json.loads(proc.stdout)
    (row,) = out["figures"]
    assert row["bench"] == "codec" and row["met"] in ("yes", "no") and row["goal"] == ">= 10x"
    text = (tmp_path / "report.md").read_text()
    assert "| `microswarm bench codec` |" in text and "MicroPython" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["machine"]["cores"] >= 1 and "headline" in saved["results"]["codec"]
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{report.BEGIN}\nold\n{report.END}\n\nrest\n")
    report.update_readme(readme, saved["results"])
    assert readme.read_text().startswith("intro\n\n") and readme.read_text().endswith("rest\n")
    assert report.readme_table(readme.read_text()) == report.readme_block(saved["results"])


def test_readme_benchmark_table_is_generated_from_the_committed_report(repo):
    saved = json.loads((repo / "docs" / "bench" / "results.json").read_text())
    readme = (repo / "README.md").read_text()
    assert report.readme_table(readme) == report.readme_block(saved["results"])
    assert (repo / "docs" / "bench" / "report.md").read_text().count(
        report.table(saved["results"])) == 1


def test_plots_draw_from_small_results(tmp_path):
    from microswarm.bench import plots

    sched = {"scenarios": {"a": {"ours": {"ratio": 1.1}, "heft": {"ratio": 3.0}},
                           "b": {"ours": {"ratio": 1.0}, "heft": {"ratio": None}}}}
    plots.sched_ratios(sched, tmp_path / "s.png")
    scale = {"curves": {"sessions": [10, 20], "rss_kb": [1000, 1200],
                        "dispatches_per_cpu_s": [900, 800]}}
    plots.scale_curves(scale, tmp_path / "c.png")
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size == (900, 420)
    assert Image.open(tmp_path / "c.png").size == (900, 380)


def test_bench_scale_stall_dump_prints_where_the_main_thread_is_busy(monkeypatch, capsys):
    """MICROSWARM_SCALE_STALL_S: a loop busy that long has its stack printed, from the main
    thread itself (faulthandler's watchdog thread crashed the master reading it)."""
    import signal
    import time

    from microswarm.bench import scale_proc

    monkeypatch.setenv("MICROSWARM_SCALE_STALL_S", "0.05")
    handler, timer = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)

    def busy_here() -> None:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            pass

    try:
        scale_proc._stall_dump()
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        busy_here()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if timer[0]:
            signal.setitimer(signal.ITIMER_REAL, *timer)
    err = capsys.readouterr().err
    assert "master loop busy for over 0.05 s" in err and "busy_here" in err
