"""What the hardware gives the worker: its clock. (Its heap's size is read and its network
stack opened by the worker's bring-up: worker_up.boot, worker_up.open_net.)"""

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
