"""The board benchmark's report: figures, markdown table and latency plot."""

from __future__ import annotations

from PIL import Image

from microswarm.bench.board import build_report, percentile, write_report


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
        assert image.getpixel((56, 318)) != (255, 255, 255)  # the first bar, above the axis
