"""A wait kernel's task on the worker's event loop: the kernel (sleep_ms) returns how long
to wait, and this coroutine awaits it, cancellable, then answers. worker.py imports it with
a node's first wait task, so a node that runs none holds no code for it."""

import time

import asyncio
import board
import msw_kernel


async def wait(session, task, fn):
    start = time.ticks_us()
    value = error = None
    try:
        value = fn(*task.args)
        # Cancellable from its first step on: a coroutine cancelled before that ends
        # without a word (and keeps its slot); a CANCEL that came first skips the sleep.
        if not task.cancelled:
            if session.ended.is_set():
                return  # the session ended before it ran: nothing to answer
            task.handle = asyncio.current_task()
            await asyncio.sleep_ms(value)
    except asyncio.CancelledError:
        if not task.cancelled:
            raise  # the session ends
    except Exception as e:
        error = e
    elapsed = msw_kernel.waited(value, error, task.cancelled,
                                time.ticks_diff(time.ticks_us(), start))
    try:
        session.engine.finished(task, value, error, elapsed, board.uptime_ms())
        session.run_inline()
        if session.link.pending():
            await session.link.drain()
    except Exception as e:
        session.fail(e)
