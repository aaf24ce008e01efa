"""docs/first-kernel.md, run as written: every `sh` block's command, in order, in a folder
holding a copy of examples/. A kernel package outside firmware/ is deployed to a virtual
board with `microswarm deploy --kernels`, loaded by in-process nodes, and a job runs on
both with exact results; after an edit the board's stale version is not used until the
package is deployed again."""

from __future__ import annotations

import re
import shutil

import pytest

from support.commands import PORTS, REPO, shell_commands, user_shell

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

DOC = REPO / "docs" / "first-kernel.md"


def tiles_by_node(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^  (\S+): (\d+) tiles$",
                                                             output, re.M)}


def test_the_tutorial_runs_as_written(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler for the native build of the tutorial")
    shutil.copytree(REPO / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("build", "package.json", "kpkg_*.json"))
    with user_shell(tmp_path, PORTS) as shell:  # the tutorial's master uses the fixed ports
        shell.env["COLUMNS"] = "200"
        shell.run_in_order(shell_commands(DOC), timeout=180)
    outputs = shell.transcript

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
