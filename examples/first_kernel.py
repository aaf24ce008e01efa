"""Write your first kernel (docs/first-kernel.md): byte histograms of uint8 image tiles,
computed by a cluster and checked against a count made here.

    python examples/first_kernel.py                              # two in-process nodes
    python examples/first_kernel.py examples/first-kernel.toml   # the mixed cluster
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from microswarm.master import Cluster

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT, TILE, BINS = 256, 192, 32, 16


def image() -> bytes:
    """A synthetic 8-bit grey image, row-major."""
    return bytes((x * 3 + y * 5 + (x * y) % 7 * 11) & 0xFF
                 for y in range(HEIGHT) for x in range(WIDTH))


def tiles(img: bytes) -> list[bytes]:
    """TILE x TILE tiles, each row-major, left to right and top to bottom."""
    return [b"".join(img[(ty + r) * WIDTH + tx:(ty + r) * WIDTH + tx + TILE]
                     for r in range(TILE))
            for ty in range(0, HEIGHT, TILE) for tx in range(0, WIDTH, TILE)]


def main(argv: list[str]) -> int:
    if argv:
        cluster = Cluster.from_file(argv[0])
    else:
        cluster = Cluster(inproc=2, kernels=[HERE / "kernels"])
    img = image()
    parts = tiles(img)
    with cluster:
        handle = cluster.submit_job("histogram", [(tile, BINS) for tile in parts])
        counts = cluster.wait(handle)
    total = [sum(c[i] for c in counts) for i in range(BINS)]
    expected = Counter((v * BINS) >> 8 for v in img)
    exact = total == [expected[i] for i in range(BINS)]
    print(f"{len(parts)} tiles of {TILE}x{TILE}, {BINS} bins: "
          f"{'exact' if exact else 'WRONG'} (checked against a count made here)")
    for node, n in sorted(Counter(handle.nodes).items()):
        print(f"  {node}: {n} tiles")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
