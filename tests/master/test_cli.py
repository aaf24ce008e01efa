"""The master's commands as a user runs them: master + nodes, run, --help."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from microswarm.firmware import kernels, msw_boot  # noqa: F401 (kernels: its import registers them)

pytestmark = pytest.mark.timeout(90)

CLI = [sys.executable, "-m", "microswarm.cli"]


def test_master_answers_nodes_then_stops_on_ctrl_c():
    master = subprocess.Popen(
        [*CLI, "master", "--key", "cli-test-key-0123456", "--host", "127.0.0.1", "--port", "0",
         "--udp-port", "-1", "--control-port", "0", "--client", "off", "--http", "off",
         "--inproc", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = master.stdout.readline()
        found = re.search(r"control (\d+)", line)
        assert found, line
        answer = subprocess.run(
            [*CLI, "nodes", "--control", f"127.0.0.1:{found.group(1)}", "--json"],
            capture_output=True, text=True, timeout=30,
        )
        assert answer.returncode == 0, answer.stderr
        nodes = json.loads(answer.stdout)["nodes"]
        assert sorted(n["node_id"] for n in nodes) == ["py1", "py2"]
        table = subprocess.run(
            [*CLI, "nodes", "--control", f"127.0.0.1:{found.group(1)}"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "COLUMNS": "200"},
        )
        assert "py1" in table.stdout and "mem" in table.stdout
        version = msw_boot.hello_fields()["kernel_hashes"]["echo"]
        assert all(n["kernel_hashes"]["echo"] == version for n in nodes)
        assert f"built-in@{version}" in table.stdout
        master.send_signal(signal.SIGINT)
        assert master.wait(20) == 0
    finally:
        if master.poll() is None:
            master.kill()
            master.wait(10)


def test_nodes_without_a_master_says_so():
    answer = subprocess.run([*CLI, "nodes", "--control", "127.0.0.1:1"], capture_output=True,
                            text=True, timeout=30)
    assert answer.returncode != 0 and "no master answers" in answer.stderr


@pytest.mark.parametrize("job", ["echo tasks=64", "matmul size=12 block=5", "montecarlo tasks=4"])
def test_run_named_jobs_match_the_reference(job):
    done = subprocess.run([*CLI, "run", *job.split(), "--inproc", "2"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "matches the reference" in done.stdout


def test_run_refuses_bad_parameters_and_help_explains():
    bad = subprocess.run([*CLI, "run", "mandelbrot", "colour=3"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode != 0 and "bad parameters for mandelbrot" in bad.stderr
    for command in ("master", "up", "nodes", "run", "demo", "jobs", "cancel", "top", "logs"):
        help_text = subprocess.run([*CLI, command, "--help"], capture_output=True, text=True,
                                   timeout=30)
        assert help_text.returncode == 0 and "usage: microswarm" in help_text.stdout


@pytest.mark.slow
def test_up_starts_the_virtual_part_of_a_cluster_file(tmp_path):
    path = tmp_path / "cluster.toml"
    path.write_text("""
[cluster]
name = "uptest"
key = "up-test-cluster-key-0123"
[master]
tcp_port = 0
udp_port = 0
control_port = 0
client = "127.0.0.1:0"
http = "127.0.0.1:0"
[[virtual]]
count = 1
link = "tcp"
[[virtual]]
count = 1
link = "serial"
[inproc]
count = 1
""")
    up = subprocess.Popen([*CLI, "up", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        first = up.stdout.readline()
        assert "master 'uptest'" in first, first + up.stderr.read()
        table = ""
        while "└" not in table:  # the table's last line
            line = up.stdout.readline()
            assert line, up.stderr.read()
            table += line
        for node in ("vmt1", "vms1", "py1"):
            assert node in table
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
