"""The background build of QEMU firmwares (tests/support/prebuild.py) knows every test file
that boots one, so a new QEMU test does not build its firmware with the suite waiting."""

from __future__ import annotations

import re
from pathlib import Path

from support import prebuild

REPO = Path(__file__).resolve().parents[2]


def test_every_test_that_boots_a_qemu_firmware_is_in_the_prebuild_table():
    table = prebuild.needs()
    files = {prefix.split("::")[0] for prefix in table}
    booting = {path.relative_to(REPO).as_posix() for path in (REPO / "tests").rglob("test_*.py")
               if re.search(r"\bQemu\(|qemu_firmware\.firmware\(", path.read_text())}
    assert booting, "no QEMU test found at all"
    assert booting <= files, f"not in support/prebuild.py's needs(): {sorted(booting - files)}"
    assert all((REPO / name).is_file() for name in files), "a file named there is gone"
    assert all(board in ("MPS2_AN500", "MPS2_AN385") for builds in table.values()
               for board, _heap, _esp32 in builds)
