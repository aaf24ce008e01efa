"""The simulated master's journal: the real one (microswarm.master.journal) in a scratch
folder, behind the three calls the simulation makes."""

from __future__ import annotations

from typing import Any

from microswarm.master.journal import Journal


class SimJournal:
    """The master's SQLite journal (microswarm.master.journal) in a scratch folder, or
    nothing when the scenario's master runs without one. A restart drops the Journal
    object without flushing it, as a killed process would: rows still in its batch are
    lost and their tasks are computed again."""

    KEY = "sim-job"

    def __init__(self, folder: str | None) -> None:
        self.path = None if folder is None else f"{folder}/journal.sqlite"
        self.db: Journal | None = None
        self.kernel = ""
        self.tasks: list = []
        self.reopen()

    def reopen(self) -> None:
        if self.path is not None:
            self.db = Journal(self.path)

    def begin(self, kernel: str, tasks: list) -> dict[int, Any]:
        self.kernel, self.tasks = kernel, tasks
        return {} if self.db is None else self.db.begin(self.KEY, kernel, tasks)

    def record(self, index: int, value: Any, node_id: str) -> None:
        if self.db is not None:
            self.db.record(self.KEY, index, value, node_id)

    def flush(self) -> None:
        if self.db is not None:
            self.db.flush()

    def stored(self) -> dict[int, Any] | None:
        """Every result the journal holds (None without a journal)."""
        if self.db is None:
            return None
        self.db.flush()
        return self.db.begin(self.KEY, self.kernel, self.tasks)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
