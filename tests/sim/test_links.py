"""Link models: bandwidth and latency arithmetic, FIFO order under jitter, loss, and
corruption that the real deframer (COBS + CRC-32) must always catch."""

from __future__ import annotations

import random

import pytest

from microswarm.protocol.catalog import MsgType
from microswarm.sim.links import PRESETS, Link, corrupt_one_byte
from microswarm.sim.wire import Receiver, pack


def test_uart_preset_is_115200_baud_8n1():
    link = Link(PRESETS["uart115200"], random.Random(1))
    assert link.serial
    assert link.transfer_time(11520) == pytest.approx(1.0)
    arrival, data = link.send(link.tx, b"x" * 1152, now=0.0)
    assert arrival == pytest.approx(0.1 + PRESETS["uart115200"].latency_s)
    assert data == b"x" * 1152


def test_presets_rank_by_speed():
    order = sorted(PRESETS.values(), key=lambda p: p.bytes_per_s)
    assert [p.name for p in order] == ["uart115200", "usb_fs_cdc", "w5500_spi20", "eth100",
                                       "loopback"]
    assert PRESETS["eth100"].bytes_per_s == pytest.approx(11.87e6, rel=1e-3)


def test_usb_cdc_into_a_board_is_slower_than_out_of_it():
    link = Link(PRESETS["usb_fs_cdc"], random.Random(1))
    assert link.rx.bytes_per_s == 150e3 and link.tx.bytes_per_s == 600e3
    to_node, _ = link.send(link.rx, b"x" * 15000, 0.0)
    from_node, _ = link.send(link.tx, b"x" * 15000, 0.0)
    assert to_node == pytest.approx(0.1 + 0.001)
    assert from_node == pytest.approx(0.025 + 0.001)


def test_frames_queue_behind_each_other_and_never_overtake_under_jitter():
    link = Link(PRESETS["usb_fs_cdc"], random.Random(7), jitter_s=0.01)
    arrivals = [link.send(link.rx, bytes(1000), now=0.0)[0] for _ in range(200)]
    assert arrivals == sorted(arrivals)
    assert link.rx.busy_until == pytest.approx(200 * 1000 / link.rx.bytes_per_s)
    assert link.tx.frames == 0 and link.rx.frames == 200


def test_loss_rate_and_disconnect():
    link = Link(PRESETS["eth100"], random.Random(3), loss=0.05)
    delivered = sum(link.send(link.tx, b"abc", 0.0) is not None for _ in range(20000))
    assert 18700 < delivered < 19300
    assert link.tx.lost == 20000 - delivered
    link.connected = False
    assert link.send(link.tx, b"abc", 0.0) is None


def test_corruption_is_refused_on_packet_links():
    with pytest.raises(ValueError, match="serial"):
        Link(PRESETS["w5500_spi20"], random.Random(1), corrupt=0.01)
    with pytest.raises(ValueError):
        Link(PRESETS["uart115200"], random.Random(1), loss=1.5)


def test_corrupt_one_byte_changes_exactly_one_byte():
    rng = random.Random(5)
    data = bytes(range(200))
    for _ in range(500):
        damaged = corrupt_one_byte(data, rng)
        assert len(damaged) == len(data)
        assert sum(a != b for a, b in zip(data, damaged, strict=True)) == 1


def test_every_corrupted_serial_frame_is_caught_and_good_frames_survive():
    """A 30% corruption rate on a serial link: the receiver never yields a damaged frame;
    it loses at most the damaged frame and, when the delimiter itself was hit, the next."""
    link = Link(PRESETS["uart115200"], random.Random(11), corrupt=0.3)
    rx = Receiver(serial=True)
    originals = {}
    received = []
    for seq in range(1, 2001):
        payload = {0: seq, 1: 100, 3: seq * 7}
        originals[seq] = payload
        out = link.send(link.tx, pack(int(MsgType.HEARTBEAT), payload, seq, True), 0.0)
        for item in rx.feed(out[1]):
            if not isinstance(item, Exception):
                received.append(item)
    damaged = link.tx.corrupted
    assert 450 < damaged < 750
    for frame in received:
        assert frame.payload == originals[frame.seq]
    assert len(received) >= 2000 - 2 * damaged
    assert rx.bad_frames >= damaged * 0.5
