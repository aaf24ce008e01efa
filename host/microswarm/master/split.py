"""Split a computation into tasks and put the results back together.

``Tiles2D`` cuts a W x H image into tiles (the last row and column may be smaller) and
pastes per-tile row-major results back into one row-major array. ``BlockMatmul`` cuts
C = A @ B into (row block, column block, depth block) tasks for the ``matmul`` kernel
and sums the partial products back into C.
"""

from __future__ import annotations

import array
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from microswarm.master.operands import Shared


class Tile(NamedTuple):
    index: int
    x: int
    y: int
    w: int
    h: int


class Tiles2D:
    def __init__(self, width: int, height: int, tile: int | tuple[int, int]) -> None:
        tw, th = (tile, tile) if isinstance(tile, int) else tile
        if width <= 0 or height <= 0 or tw <= 0 or th <= 0:
            raise ValueError("image and tile sizes must be positive")
        self.width, self.height, self.tile_w, self.tile_h = width, height, tw, th
        self.tiles: list[Tile] = []
        for y in range(0, height, th):
            for x in range(0, width, tw):
                self.tiles.append(
                    Tile(len(self.tiles), x, y, min(tw, width - x), min(th, height - y))
                )

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    def assemble(self, results: Sequence[Sequence[Any]], typecode: str = "H") -> array.array:
        """One row-major width x height array from the tiles' row-major results."""
        out = array.array(typecode, bytes(array.array(typecode).itemsize * self.width
                                          * self.height))
        for tile, data in zip(self.tiles, results, strict=True):
            if len(data) != tile.w * tile.h:
                raise ValueError(f"tile {tile.index}: {len(data)} values for {tile.w}x{tile.h}")
            for row in range(tile.h):
                start = (tile.y + row) * self.width + tile.x
                out[start : start + tile.w] = array.array(
                    typecode, data[row * tile.w : (row + 1) * tile.w]
                )
        return out

    def owner_map(self, owners: Sequence[Any]) -> list[Any]:
        """Per pixel, the owner of its tile (for tinting a picture by node)."""
        grid: list[Any] = [None] * (self.width * self.height)
        for tile, owner in zip(self.tiles, owners, strict=True):
            for row in range(tile.h):
                start = (tile.y + row) * self.width + tile.x
                grid[start : start + tile.w] = [owner] * tile.w
        return grid


class BlockMatmul:
    """C (m x n) = A (m x k) @ B (k x n), row-major typed arrays, in block tasks.

    ``tasks()`` gives the argument lists for the ``matmul`` kernel; ``assemble`` adds the
    partial products of the depth blocks into C (exact for integer inputs). With
    ``share=True`` each block of B is a shared operand (``microswarm.master.Shared``): it
    goes to a node once, however many row blocks the node multiplies by it.
    """

    def __init__(self, a: array.array, b: array.array, m: int, k: int, n: int,
                 block: int, *, share: bool = False) -> None:
        if len(a) != m * k or len(b) != k * n:
            raise ValueError("a must hold m*k and b k*n items")
        if a.typecode != b.typecode:
            raise ValueError("a and b must have the same typecode")
        self.a, self.b, self.m, self.k, self.n, self.block = a, b, m, k, n, block
        self.share = share
        self.blocks = [
            (r, c, d)
            for r in range(0, m, block)
            for c in range(0, n, block)
            for d in range(0, k, block)
        ]

    def tasks(self) -> list[list[Any]]:
        out = []
        shared: dict[tuple[int, int], Shared] = {}
        for r, c, d in self.blocks:
            bm, bn, bk = min(self.block, self.m - r), min(self.block, self.n - c), min(
                self.block, self.k - d)
            a_blk = array.array(self.a.typecode)
            for i in range(r, r + bm):
                a_blk.extend(self.a[i * self.k + d : i * self.k + d + bk])
            b_arg: Any = shared.get((c, d))
            if b_arg is None:
                b_arg = array.array(self.b.typecode)
                for i in range(d, d + bk):
                    b_arg.extend(self.b[i * self.n + c : i * self.n + c + bn])
                if self.share:
                    b_arg = shared[(c, d)] = Shared(b_arg)
            out.append([a_blk, b_arg, bm, bk, bn])
        return out

    def assemble(self, results: Sequence[Sequence[Any]]) -> list[Any]:
        out: list[Any] = [0] * (self.m * self.n)
        for (r, c, _d), part in zip(self.blocks, results, strict=True):
            bn = min(self.block, self.n - c)
            for idx, value in enumerate(part):
                i, j = divmod(idx, bn)
                out[(r + i) * self.n + c + j] += value
        return out
