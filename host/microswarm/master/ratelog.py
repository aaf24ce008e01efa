"""Log lines a peer can trigger at will (bad frames, refused joins), at a bounded rate.

A token bucket: `burst` lines at once, then `per_s` a second; lines over the budget are
dropped and counted, and the next line that passes says how many were dropped. Counters
of what happened (NodeInfo.bad_frames, Master.stats) stay exact; only the log is limited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

LINES_PER_S = 5.0
BURST = 20


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, per_s: float = LINES_PER_S, burst: int = BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.per_s = per_s
        self.burst = burst
        self.clock = clock
        self.suppressed = 0  # dropped since the last line that passed
        self.dropped = 0  # dropped in all
        self._tokens = float(burst)
        self._at = clock()

    def log(self, level: int, msg: str, *args: object) -> bool:
        """Log unless over budget; True when the line was written."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens < 1:
            self.suppressed += 1
            self.dropped += 1
            return False
        self._tokens -= 1
        if self.suppressed:
            msg += " (%d similar lines suppressed)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        self.logger.log(level, msg, *args)
        return True
