"""The SQLite journal on its own: batching, values round trip, reopening, key clashes."""

from __future__ import annotations

import array

import pytest

from microswarm.master.journal import Journal


def test_results_survive_a_reopen_and_values_round_trip(tmp_path):
    path = tmp_path / "j.sqlite"
    journal = Journal(path, batch=2)
    assert journal.begin("job", "mandelbrot", [[1], [2], [3]]) == {}
    tile = array.array("H", [1, 2, 65535])
    journal.record("job", 0, tile, "vm1")
    journal.record("job", 2, {"k": [1.5, None, b"\x00"]}, "py1")  # batch of 2: committed
    journal.record("job", 1, "unflushed", "py2")  # lost with the process
    journal._db.close()  # a crash: no flush
    again = Journal(path)
    known = again.begin("job", "mandelbrot", [[1], [2], [3]])
    assert known == {0: tile, 2: {"k": [1.5, None, b"\x00"]}}
    assert known[0].typecode == "H"
    again.finish("job", "done")
    assert again.jobs() == [
        {"key": "job", "kernel": "mandelbrot", "tasks": 3, "state": "done", "done": 2}
    ]
    with pytest.raises(ValueError, match="already holds job 'job'"):
        again.begin("job", "matmul", [[1]])
    again.close()
