"""`microswarm bench native` end to end (quick mode): the report's shape and that every
native result was checked against pure Python before timing (the bench exits otherwise).
No figure is asserted: timings belong to the bench, not to tests."""

from __future__ import annotations

import argparse

from microswarm.bench import native


def test_bench_report_has_headline_kernels_and_sizes(mpy_x64):
    report = native.run(argparse.Namespace(quick=True))
    head = report["headline"]
    assert head["unit"] == "x" and head["value"] > 0
    assert set(report["kernels"]) == {"matmul_int8_64", "mandelbrot_32", "cobs_crc_4k"}
    for figures in report["kernels"].values():
        assert figures["pure_us"] > 0 and figures["native_us"] > 0
    assert report["mpy_bytes"]["x64"] == mpy_x64.stat().st_size
