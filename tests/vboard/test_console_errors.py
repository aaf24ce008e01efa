"""The board's errors picked out of its console stream, in any chunking."""

from __future__ import annotations

from microswarm.console import ConsoleErrors

STREAM = (
    b"\x00\x05\x01\x02\n\xff" * 40  # binary frames on a serial link: nothing to report
    + b"MicroPython v1.29 on unix\r\n>>> "
    + b"Traceback (most recent call last):\r\n  File \"main.py\", line 3, in <module>\r\n"
    + b"  File \"worker.py\", line 9, in main\r\nImportError: can't import name SPI\r\n"
    + b"microswarm: link down: [Errno 111] ECONNREFUSED\n"
)
EXPECTED = ["ImportError: can't import name SPI",
            "microswarm: link down: [Errno 111] ECONNREFUSED"]


def test_whole_stream():
    errors = ConsoleErrors()
    assert errors.feed(STREAM) == EXPECTED
    assert errors.last == EXPECTED[-1]


def test_every_split_point_and_byte_by_byte():
    for cut in range(len(STREAM)):
        errors = ConsoleErrors()
        assert errors.feed(STREAM[:cut]) + errors.feed(STREAM[cut:]) == EXPECTED, cut
    errors = ConsoleErrors()
    found = []
    for i in range(len(STREAM)):
        found += errors.feed(STREAM[i:i + 1])
    assert found == EXPECTED


def test_an_endless_line_is_dropped_not_kept():
    errors = ConsoleErrors()
    assert errors.feed(b"microswarm: " + b"x" * 10_000) == []
    assert errors.feed(b"\nmicroswarm: ok\n") == ["microswarm: ok"]
    assert errors.recent == ["microswarm: ok"]
