"""The journal: jobs, tasks and results in SQLite, so a restarted master resumes a job.

A job is journaled under a caller-chosen key, with the SHA-256 of each task's encoded
arguments: a key reused for another kernel, task count or arguments is refused
(JournalKeyError naming the key and the first task that differs), whether the earlier job
finished or was cut off mid-way, so no stale result is ever returned for new arguments.
Results are buffered and committed in
batches (WAL mode, synchronous=NORMAL), so journaling costs a few microseconds per
result; a crash loses at most the last batch, whose tasks are simply computed again.
Values are stored in the wire's deterministic CBOR (typed arrays included).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from microswarm.master.operands import inline
from microswarm.wire import decode_payload, encode_payload

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY, kernel TEXT NOT NULL, tasks INTEGER NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, finished REAL
);
CREATE TABLE IF NOT EXISTS tasks (
    key TEXT NOT NULL, idx INTEGER NOT NULL, digest BLOB NOT NULL, PRIMARY KEY (key, idx)
);
CREATE TABLE IF NOT EXISTS results (
    key TEXT NOT NULL, idx INTEGER NOT NULL, value BLOB NOT NULL, node TEXT NOT NULL,
    elapsed_us INTEGER NOT NULL, PRIMARY KEY (key, idx)
);
"""


class JournalKeyError(ValueError):
    """A journal key already names a job with another kernel, task count or arguments."""


def args_digest(args: Sequence[Any]) -> bytes:
    """SHA-256 of one task's arguments as the wire encodes them (deterministic CBOR),
    shared operands by their value: sharing one does not change the job."""
    return hashlib.sha256(encode_payload(inline(args))).digest()


class Journal:
    def __init__(self, path: str | Path, *, batch: int = 256, max_delay_s: float = 0.2) -> None:
        self.path = Path(path)
        self.batch = batch
        self.max_delay_s = max_delay_s
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}
        # A journal written before digests were kept holds each task's encoded arguments.
        self._legacy = "digest" not in columns
        self._rows: list[tuple[str, int, bytes, str, int]] = []
        self._oldest = 0.0

    def begin(self, key: str, kernel: str, arg_lists: Sequence[Sequence[Any]]) -> dict[int, Any]:
        """Record a job (once per key); return the results already journaled for it.
        JournalKeyError if the key names a job with other arguments."""
        row = self._db.execute(
            "SELECT kernel, tasks, state FROM jobs WHERE key = ?", (key,)).fetchone()
        if row is not None and (row[0] != kernel or row[1] != len(arg_lists)):
            raise JournalKeyError(
                f"journal already holds job {key!r} as {row[1]} {row[0]} tasks ({row[2]}), "
                f"not {len(arg_lists)} {kernel} tasks: use another key"
            )
        if self._legacy:
            blobs = [encode_payload(inline(a)) for a in arg_lists]
            digests = [hashlib.sha256(b).digest() for b in blobs]
        else:
            digests = blobs = [args_digest(a) for a in arg_lists]
        if row is None:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, 'running', ?, NULL)",
                (key, kernel, len(arg_lists), time.time()),
            )
            self._db.executemany("INSERT INTO tasks VALUES (?, ?, ?)",
                                 ((key, i, b) for i, b in enumerate(blobs)))
            self._db.execute("COMMIT")
            return {}
        column = "args" if self._legacy else "digest"
        stored = self._db.execute(
            f"SELECT idx, {column} FROM tasks WHERE key = ? ORDER BY idx", (key,))
        for idx, value in stored:
            held = hashlib.sha256(value).digest() if self._legacy else value
            if idx >= len(digests) or held != digests[idx]:
                raise JournalKeyError(
                    f"journal already holds job {key!r} ({row[0]}, {row[2]}) with other "
                    f"arguments (task {idx} differs): its results are not for these "
                    "arguments; use another key"
                )
        return {
            idx: decode_payload(value)
            for idx, value in self._db.execute(
                "SELECT idx, value FROM results WHERE key = ?", (key,)
            )
        }

    def record(self, key: str, index: int, value: Any, node: str, elapsed_us: int = 0) -> None:
        if not self._rows:
            self._oldest = time.monotonic()
        self._rows.append((key, index, encode_payload(value), node, elapsed_us))
        if len(self._rows) >= self.batch:
            self.flush()

    def due(self) -> bool:
        return bool(self._rows) and time.monotonic() - self._oldest >= self.max_delay_s

    def flush(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?)", rows)
        self._db.execute("COMMIT")

    def finish(self, key: str, state: str) -> None:
        self.flush()
        self._db.execute(
            "UPDATE jobs SET state = ?, finished = ? WHERE key = ?", (state, time.time(), key)
        )

    def jobs(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT j.key, j.kernel, j.tasks, j.state, "
            "(SELECT COUNT(*) FROM results r WHERE r.key = j.key) FROM jobs j ORDER BY created"
        )
        return [
            {"key": k, "kernel": kn, "tasks": n, "state": st, "done": d}
            for k, kn, n, st, d in rows
        ]

    def close(self) -> None:
        self.flush()
        self._db.close()
