"""docs/first-kernel.md, run as written: every `sh` block's command, in order, in a folder
holding a copy of examples/. A kernel package outside firmware/ is deployed to a virtual
board with `microswarm deploy --kernels`, loaded by in-process nodes, and a job runs on
both with exact results; after an edit the board's stale version is not used until the
package is deployed again."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "first-kernel.md"


def doc_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def tiles_by_node(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^  (\S+): (\d+) tiles$",
                                                             output, re.M)}


def test_the_tutorial_runs_as_written(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler for the native build of the tutorial")
    shutil.copytree(REPO / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("build", "package.json", "kpkg_*.json"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               COLUMNS="200")
    background: list[subprocess.Popen] = []
    outputs: list[tuple[str, str]] = []
    try:
        for command in doc_commands():
            if command.endswith("&"):
                proc = subprocess.Popen(["bash", "-c", "exec " + command[:-1].strip()],
                                        cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
                background.append(proc)
                ready = proc.stdout.readline()  # the board prints its banner when it is up
                assert ready, f"{command!r} ended at once"
                continue
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=180)
            out = done.stdout + done.stderr
            assert done.returncode == 0, f"{command!r} failed:\n{out}"
            outputs.append((command, out))
    finally:
        for proc in background:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    runs = [out for cmd, out in outputs if cmd.startswith("python examples/first_kernel.py")]
    assert len(runs) == 4 and all("16 bins: exact" in out for out in runs)
    local, mixed, stale, redeployed = (tiles_by_node(out) for out in runs)
    assert set(local) == {"py1", "py2"} and sum(local.values()) == 48
    # the board's default name: its board's name and the end of its unique id
    (board,) = [n for n in mixed if re.fullmatch(r"w5500-evb-pico2-[0-9a-f]{6}", n)]
    assert set(mixed) == {"py1", "py2", board} and sum(mixed.values()) == 48
    assert set(stale) == {"py1", "py2"}, "the board's old version must not be used"
    assert board in redeployed and sum(redeployed.values()) == 48

    deploys = [out for cmd, out in outputs if cmd.startswith("microswarm deploy")]
    assert len(deploys) == 2 and all("is up after" in out for out in deploys)
    assert "the target runs x64, not armv7emsp" in deploys[0]  # the virtual board's arch
    assert "copy histogram.mpy" in deploys[0] and "copy fast_hist.mpy" in deploys[0]
    assert "copy kpkg_kernels.json" in deploys[0] and "copy kpkg_firmware.json" in deploys[0]
    # the edit changed one module: only it and the manifest are copied again
    copied = sorted(re.findall(r"^  copy (\S+) ", deploys[1], re.M))
    assert copied == ["histogram.mpy", "kpkg_kernels.json"]

    (native,) = [out for cmd, out in outputs if cmd.startswith("microswarm native build")]
    assert "build/x64/fast_hist.mpy" in native
    (calibrated,) = [out for cmd, out in outputs if cmd.startswith("microswarm sim calibrate")]
    assert '"histogram"' in calibrated and "vm_s_per_unit" in calibrated
    (simulated,) = [out for cmd, out in outputs if cmd.startswith("microswarm sim examples")]
    assert "result: OK - 400 tasks" in simulated


def test_the_code_the_tutorial_shows_is_the_example_package():
    shown = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert shown in (REPO / "examples" / "kernels" / "histogram.py").read_text()
