"""The SQLite journal on its own: batching, values round trip, reopening, key clashes."""

from __future__ import annotations

import array
import sqlite3

import pytest

from microswarm.master.journal import Journal, JournalKeyError
from microswarm.wire import encode_payload


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


def test_a_key_reused_with_other_arguments_is_refused_naming_it(tmp_path):
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    first = [[i, "x"] for i in range(100)]
    journal.begin("tiles", "echo", first)
    for i in range(43):  # mid-job: 43 results in, then the process dies
        journal.record("tiles", i, [i, "x"], "py1")
    journal.flush()
    journal._db.close()
    again = Journal(path)
    other = [list(a) for a in first]
    other[57][0] = -1  # one task's arguments differ, past the results already in
    with pytest.raises(JournalKeyError, match=r"job 'tiles' \(echo, running\) with other "
                                              r"arguments \(task 57 differs\)"):
        again.begin("tiles", "echo", other)
    assert len(again.begin("tiles", "echo", first)) == 43  # the same arguments resume
    for i in range(43, 100):
        again.record("tiles", i, [i, "x"], "py1")
    again.finish("tiles", "done")
    # after completion: every result is there, and still none for other arguments
    with pytest.raises(JournalKeyError, match=r"'tiles' \(echo, done\).*task 0 differs"):
        again.begin("tiles", "echo", [[i, "y"] for i in range(100)])
    typed = [[array.array("h", [1, 2])], [array.array("h", [3])]]
    again.begin("typed", "echo", typed)
    with pytest.raises(JournalKeyError, match="task 1 differs"):  # same values, other typecode
        again.begin("typed", "echo", [[array.array("h", [1, 2])], [array.array("i", [3])]])
    assert again.begin("typed", "echo", typed) == {}
    again.close()


def test_a_journal_written_before_digests_is_checked_against_its_stored_arguments(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE jobs (key TEXT PRIMARY KEY, kernel TEXT NOT NULL, tasks INTEGER NOT NULL,
                           state TEXT NOT NULL, created REAL NOT NULL, finished REAL);
        CREATE TABLE tasks (key TEXT NOT NULL, idx INTEGER NOT NULL, args BLOB NOT NULL,
                            PRIMARY KEY (key, idx));
        CREATE TABLE results (key TEXT NOT NULL, idx INTEGER NOT NULL, value BLOB NOT NULL,
                              node TEXT NOT NULL, elapsed_us INTEGER NOT NULL,
                              PRIMARY KEY (key, idx));
    """)
    db.execute("INSERT INTO jobs VALUES ('old', 'echo', 2, 'done', 0, 0)")
    db.executemany("INSERT INTO tasks VALUES ('old', ?, ?)",
                   [(i, encode_payload([i])) for i in range(2)])
    db.executemany("INSERT INTO results VALUES ('old', ?, ?, 'py1', 0)",
                   [(i, encode_payload(i)) for i in range(2)])
    db.commit()
    db.close()
    journal = Journal(path)
    assert journal.begin("old", "echo", [[0], [1]]) == {0: 0, 1: 1}
    with pytest.raises(JournalKeyError, match="task 1 differs"):
        journal.begin("old", "echo", [[0], [2]])
    journal.begin("new", "echo", [[5]])  # new jobs in an old file keep working
    assert journal.begin("new", "echo", [[5]]) == {}
    journal.close()


def test_master_refuses_a_journal_key_reused_with_other_arguments(tmp_path):
    """As a user meets it: a finished job, then the same key with new arguments."""
    import asyncio

    from microswarm.master import Master

    async def job(args: list) -> list:
        async with Master(key=b"journal-test-key-0123", tcp_port=None, udp_port=None,
                          control_port=None, journal=tmp_path / "j.sqlite") as m:
            await m.add_inproc_nodes(2)
            await m.wait_for_nodes(2, 10)
            return await m.submit("echo", args, key="echo-job")

    assert asyncio.run(job([[i] for i in range(20)])) == list(range(20))
    with pytest.raises(JournalKeyError, match="'echo-job'.*task 0 differs"):
        asyncio.run(job([[i + 1] for i in range(20)]))
    assert asyncio.run(job([[i] for i in range(20)])) == list(range(20))
