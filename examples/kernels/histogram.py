"""A byte histogram of uint8 image tiles: the kernel of docs/first-kernel.md.

Plain MicroPython-compatible Python; the same file runs on boards, virtual boards, local
and in-process nodes and simulated nodes. fast_hist.c is its native version (the node
uses it where `microswarm native build` made one for its architecture); this function is
the reference both must agree with.
"""

import array

from msw_kernel import kernel


@kernel("histogram", args=[("data", "tarray:B"), ("bins", "uint")],
        cost=lambda data, bins: len(data),
        sample=lambda: [bytes(range(256)) * 16, 16],
        native="fast_hist")
def histogram(data, bins):
    """counts[i] = how many bytes v of `data` fall in bin i = (v * bins) >> 8."""
    if bins < 1 or bins > 256:
        raise ValueError("bins must be 1..256")
    counts = array.array("I", bytes(4 * bins))
    for v in data:
        counts[(v * bins) >> 8] += 1
    return counts
