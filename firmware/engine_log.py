"""A node's own log (SPEC.md, LOG): records kept while the node cannot send them, sent as
LOG frames once the session is joined, at most _BURST at once, then one per _EVERY_MS.
Loaded on the first record: a node with nothing to say never imports it; on MicroPython a
flush that sends the last record drops it from sys.modules again (its state is the node's
Stats: the next record loads it anew)."""

import sys

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_T_LOG = const(9)
_LOG_LEVEL = const(0)
_LOG_TEXT = const(1)
# END GENERATED

_KEEP = const(4)  # records kept while they cannot go out (the oldest give way)
_TEXT = const(160)  # characters of a record's text
_BURST = const(8)  # LOG frames a node may send at once...
_EVERY_MS = const(1000)  # ...then one per this interval
_WARNING = const(2)  # LogLevel
_ERROR = const(3)


def note(stats, level, text):
    """Keep a record in the node's boot-long Stats; when _KEEP are waiting the oldest is
    dropped, and counted (the master is told how many)."""
    logs = stats.logs
    if logs is None:
        logs = stats.logs = []
    elif len(logs) >= _KEEP:
        logs.pop(0)
        stats.log_dropped += 1
    if len(text) > _TEXT:
        text = text[:_TEXT - 3] + "..."
    logs.append((level, text))


def log(eng, level, text, now):
    """A record for the master's log (LogLevel) from engine `eng`: sent now if its session
    is joined and the rate allows, else kept (bounded) for later or the next session."""
    note(eng.stats, level, text)
    if eng.state == 2:  # engine.JOINED
        flush(eng, now)


def flush(eng, now):
    """Send what is waiting, as far as the rate allows (the engine calls it joined)."""
    stats = eng.stats
    gained = int((now - stats.log_at) // _EVERY_MS)
    if gained > 0:
        tokens = stats.log_tokens + gained
        if tokens >= _BURST:
            stats.log_tokens = _BURST
            stats.log_at = now
        else:
            stats.log_tokens = tokens
            stats.log_at += gained * _EVERY_MS
    logs = stats.logs
    while logs and stats.log_tokens > 0 and eng.state == 2:  # engine.JOINED
        if stats.log_dropped:
            level = _WARNING
            text = str(stats.log_dropped) + " log lines dropped (rate limit or no link)"
            stats.log_dropped = 0
        else:
            level, text = logs.pop(0)
        stats.log_tokens -= 1
        try:
            eng.io.send(_T_LOG, {_LOG_LEVEL: level, _LOG_TEXT: text})
        except Exception:  # no heap for the frame: this record is lost, and counted
            stats.log_dropped += 1
            return
    if not logs and not stats.log_dropped and sys.implementation.name == "micropython":
        sys.modules.pop("engine_log", None)  # all said: its code leaves the heap
