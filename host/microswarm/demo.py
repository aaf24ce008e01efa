"""The main job: a mixed virtual cluster renders a Mandelbrot set.

Starts a master with MicroPython VM boards over TCP, a VM board on a pty serial link and
in-process CPython nodes; splits the image into tiles (the `mandelbrot` kernel, Q13 fixed
point), checks the assembled image against the reference computed here, writes a PNG in
which each tile is tinted by the node that computed it, and prints a per-node table.

  microswarm demo                       # a few seconds on a 2-core machine
  microswarm demo --tcp-boards 2 --serial-boards 1 --inproc 2 --width 480 --height 360
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tcp-boards", type=int, default=3, help="VM boards over TCP")
    parser.add_argument("--serial-boards", type=int, default=1, help="VM boards on pty serial")
    parser.add_argument("--inproc", type=int, default=2, help="in-process CPython nodes")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--tile", type=int, default=40, help="tile edge in pixels")
    parser.add_argument("--max-iter", type=int, default=256)
    parser.add_argument("--python-only", action="store_true",
                        help="VM boards run the pure-Python kernel (no native module)")
    parser.add_argument("--out", default="out/demo-mandelbrot.png", help="PNG to write")


def run(args: argparse.Namespace) -> int:
    import os
    import time

    from microswarm.master import Cluster
    from microswarm.master.config import ClusterSpec, VirtualGroup
    from microswarm.master.jobs import mandelbrot

    spec = ClusterSpec(
        name="demo", key=os.urandom(16).hex().encode(), tcp_port=0, udp_port=None,
        control_port=None, client=None, http=None, inproc=args.inproc,
        virtual=[g for g in (
            VirtualGroup(args.tcp_boards, "unix", "tcp", "vm-tcp", not args.python_only),
            VirtualGroup(args.serial_boards, "unix", "serial", "vm-serial", not args.python_only),
        ) if g.count],
    )
    plan = mandelbrot(args.width, args.height, args.tile, args.max_iter)
    print(f"microswarm demo: {args.tcp_boards} MicroPython VM boards over TCP, "
          f"{args.serial_boards} on a pty serial link, {args.inproc} in-process nodes")
    started = time.perf_counter()
    cluster = Cluster(spec)
    with cluster:
        up = time.perf_counter() - started
        print(f"{len(cluster.nodes())} nodes joined in {up:.1f} s; rendering "
              f"{args.width}x{args.height} in {len(plan.tasks)} tiles (max_iter {args.max_iter})")
        t0 = time.perf_counter()
        handle = cluster.submit_job(plan.kernel, plan.tasks)
        from microswarm.master.cluster import progress_bar

        with progress_bar("mandelbrot tiles", len(plan.tasks)) as update:
            results = cluster.wait(handle, update)
        elapsed = time.perf_counter() - t0
        nodes = {n.node_id: n for n in cluster.nodes()}
        stats = cluster.master.scheduler.node_stats()
        duplicates = cluster.master.scheduler.duplicates
    image = plan.gather(results)
    reference = plan.reference()
    ok = image == reference
    owners = list(handle.nodes)
    out = Path(args.out)
    write_png(out, plan.extra, image, owners, args.max_iter)
    print_table(nodes, stats, owners)
    print(f"{len(plan.tasks)} tiles in {elapsed:.2f} s, {duplicates} duplicate results dropped; "
          f"image {'matches' if ok else 'DIFFERS FROM'} the reference "
          f"({plan.describe(image)}); wrote {out}")
    return 0 if ok else 1


def write_png(path: Path, tiles: Any, image: Any, owners: list[str | None], max_iter: int) -> None:
    import math

    from PIL import Image, ImageDraw

    names = sorted({o for o in owners if o})
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    width, height = tiles.width, tiles.height
    owner_of = tiles.owner_map(owners)
    legend_h = 16 * ((len(names) + 3) // 4) + 8
    picture = Image.new("RGB", (width, height + legend_h), (20, 20, 20))
    pixels = picture.load()
    log_max = math.log1p(max_iter)
    for y in range(height):
        row = y * width
        for x in range(width):
            it = image[row + x]
            r, g, b = colours.get(owner_of[row + x], (200, 200, 200))
            if it >= max_iter:
                pixels[x, y] = (r // 6, g // 6, b // 6)
            else:
                shade = 0.3 + 0.7 * math.log1p(it) / log_max
                pixels[x, y] = (int(r * shade), int(g * shade), int(b * shade))
    draw = ImageDraw.Draw(picture)
    column = max(1, width // 4)
    for i, name in enumerate(names):
        x, y = 4 + (i % 4) * column, height + 4 + 16 * (i // 4)
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=colours[name])
        draw.text((x + 14, y), f"{name} ({owners.count(name)})", fill=(235, 235, 235))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def print_table(nodes: dict[str, Any], stats: dict[str, Any], owners: list[str | None]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="per node")
    for col in ("node", "link", "native", "tiles", "mean kernel µs", "bytes in", "bytes out"):
        table.add_column(col, no_wrap=True, justify="left" if col in ("node", "link") else "right")
    for node_id in sorted(nodes):
        info = nodes[node_id]
        tiles = owners.count(node_id)
        mean = info.compute_us / info.results if info.results else 0.0
        table.add_row(node_id, info.link, info.native_arch or "-", str(tiles), f"{mean:,.0f}",
                      f"{info.bytes_in:,}", f"{info.bytes_out:,}")
    Console().print(table)
