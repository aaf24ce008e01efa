"""What the worker reads of the hardware on every task and heartbeat: its clock.

The board's network stack (`open_net`) and heap size, read once a boot or a dial, are
worker_up.py's (not held by a running node).
"""

import time

_last_tick = time.ticks_ms()
_uptime = 0


def uptime_ms():
    """Milliseconds since boot. Accumulated from tick differences so it outlives the
    tick counter's wrap, as long as it is read more often than once per wrap period
    (the heartbeat reads it every few seconds)."""
    global _last_tick, _uptime
    now = time.ticks_ms()
    _uptime += time.ticks_diff(now, _last_tick)
    _last_tick = now
    return _uptime
