"""`microswarm bench serial --json`, as docs/qemu.md shows it, reports both ways."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_serial_reports_blocks_beside_byte_by_byte():
    cli = str(Path(sys.executable).parent / "microswarm")
    out = subprocess.run([cli, "bench", "serial", "--json"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    report = json.loads(out)
    headline = report["headline"]
    assert headline["unit"] == "us/byte" and headline["value"] > 0 and headline["baseline"] > 0
    assert report["bytes_per_measurement"] == 262140  # whole 255-byte frames
    assert len(report["us_per_byte_blocks"]) == len(report["us_per_byte_byte_by_byte"]) == 3
