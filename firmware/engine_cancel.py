"""CANCEL for the node engine: the master withdraws a task (SPEC.md, CANCEL). Loaded with a
session's first CANCEL (most see none), so a joined node holds no code for it; engine.py's
receive() calls cancel()."""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_E_CANCELLED = const(15)
# END GENERATED
# BEGIN GENERATED: text numbers (tools/gen_protocol.py, from msw_texts.py)
_TX_ENGINE_CANCELLED_QUEUED = const(64)
_TX_ENGINE_CANCELLED_WAITING = const(65)
# END GENERATED


def cancel(eng, task_id):
    """A queued task fails CANCELLED at once, as does one waiting for its operands; a
    running one is marked and its runner told (io.cancel): it answers when it returns."""
    queue = eng.queue
    for i in range(len(queue)):
        if queue[i].task_id == task_id:
            del queue[i]
            eng._fail(task_id, _E_CANCELLED, _TX_ENGINE_CANCELLED_QUEUED, 0)
            return
    if eng.ops is not None and eng.ops.drop(task_id):
        eng._fail(task_id, _E_CANCELLED, _TX_ENGINE_CANCELLED_WAITING, 0)
        return
    for task in eng.running:
        if task.task_id == task_id and not task.cancelled:
            task.cancelled = True
            eng.io.cancel(task)
            return
    # not held (its RESULT crossed the CANCEL on the wire): nothing to answer
