"""`microswarm bench firmware` runs end to end with small counts and reports its figures."""

from __future__ import annotations

import argparse

import pytest

from microswarm.bench import firmware

pytestmark = pytest.mark.slow


def test_bench_reports_every_figure():
    report = firmware.run(argparse.Namespace(board="w5500-evb-pico2", echo=30, tiles=3,
                                             alloc_tasks=20))
    headline = report["headline"]
    assert headline["unit"] == "tasks/s" and headline["value"] > 0 and headline["baseline"] > 0
    assert report["tcp"]["matmul_tiles_per_s"] > 0
    assert report["serial"]["echo_tasks_per_s"] > 0
    assert report["serial"]["matmul_tiles_per_s"] > 0
    assert report["tcp_pure_python_matmul_tiles_per_s"] > 0
    heap = report["heap_32k_task"]
    assert 0 < heap["firmware_modules_bytes"] < heap["smallest_vm_heap_bytes"] <= 450000
    alloc = report["allocation_per_task"]
    assert alloc["tasks"] == 20
    # an echo task may allocate nothing at all (tests/firmware/test_alloc.py)
    assert 0 <= alloc["echo_bytes_per_task"] < alloc["matmul_4x4_bytes_per_task"]
    collections = alloc["collections_per_1000_tasks"]
    assert collections["board"] == "esp32-devkit-w5500" and collections["echo"] >= 0
