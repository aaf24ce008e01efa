"""The firmware codec benchmark runs in the VM and reports every figure for every message
(no timing is asserted: only that the figures exist, are positive, and that the codec's
allocation stays within what a board can afford per frame)."""

from __future__ import annotations

from microswarm.bench.codec_vm import benchmark_messages, measure_firmware_codec
from microswarm.protocol.catalog import FRAME_OVERHEAD
from microswarm.wire import encode_frame


def test_measure_firmware_codec_reports_every_message():
    report = measure_firmware_codec(frames=20)
    assert report["frames"] == 20 and "MicroPython" in report["vm"]
    messages = benchmark_messages()
    assert set(report["messages"]) == set(messages)
    for name, figures in report["messages"].items():
        msg_type, payload = messages[name]
        assert figures["frame_bytes"] == len(encode_frame(msg_type, payload, seq=7))
        assert figures["serial_bytes"] > figures["frame_bytes"]
        for key in ("encode", "decode", "decode_zero_copy", "serial_encode", "deframe",
                    "roundtrip"):
            assert figures[f"{key}_fps"] > 0, (name, key)
        # Encoding writes into the writer's buffer: a few small objects, never the payload.
        assert figures["encode_alloc_bytes"] < 512, (name, figures)
    task = report["messages"]["task_4k_int8"]
    assert task["frame_bytes"] > 4096 + FRAME_OVERHEAD
    # Decoding the 4 KB tile copies it once into an array.array, and little besides.
    assert 4096 <= task["decode_alloc_bytes"] < 4096 + 2048
    assert report["messages"]["result_40b"]["frame_bytes"] in range(36, 45)
