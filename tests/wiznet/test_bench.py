"""The wiznet bench's counting path, through the strict chip model: the driver's SPI traffic
per frame stays near the payload size, and the byte-at-a-time baseline costs what its access
pattern implies (counts, not times)."""

from __future__ import annotations

import pytest

from microswarm.bench import wiznet as bench


@pytest.mark.parametrize("kind", ["w5500", "w6100"])
def test_burst_transfers_stay_within_five_percent_of_the_payload(kind):
    ours = bench.measure(kind, False, (16384,), 1, None)["16384"]
    assert ours["rx_spi_bytes_per_payload_byte"] < 1.05
    assert ours["tx_spi_bytes_per_payload_byte"] < 1.05
    # 8 chunks of a 2 KB ring each way: about 15 transactions per chunk (pointers, counters
    # read twice, command, status) at most 20
    assert ours["rx_transactions_per_frame"] < 160 and ours["tx_transactions_per_frame"] < 160
    naive = bench.measure(kind, True, (1024,), 1, None)["1024"]
    assert naive["tx_spi_bytes_per_payload_byte"] > 4.0  # 3 header bytes per data byte
    assert naive["tx_transactions_per_frame"] > 1024
