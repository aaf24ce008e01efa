"""Build the firmware for a board, copy what changed with mpremote, reset the board and
wait until the node joins.

  microswarm deploy --board w5500-evb-pico2 --port /dev/ttyACM0 \\
      --master 192.168.1.10:5880 --key-file cluster.key --control 127.0.0.1:5882
  microswarm deploy --board pico2-usb --port /dev/ttyACM0 --key-file cluster.key   # serial
  microswarm deploy ... --dry-run      # list what would be copied, change nothing
  microswarm deploy ... --kernels mykernels/   # add a kernel package (docs/first-kernel.md)
  microswarm deploy ... --romfs        # the modules in the board's ROM partition

The board's files are compared by sha256 (computed on the board), so a second deploy
copies only the modules that changed. A running worker is interrupted the way mpremote
always does (Ctrl-C), so a board can be updated while it works. A master holding the
board's serial port must release it first: mpremote needs the port to itself.
With --romfs the .mpy modules (the firmware's, the kernels', a --kernels package's) go
into one ROMFS image written to the board's ROM partition with `mpremote romfs deploy`:
the firmware imports them in place from /rom, their bytecode stays in flash instead of
the heap. main.py and the data files stay on the file system, and the modules' copies
there are removed (they would be imported first). The image is written only when the
partition does not hold it already. It needs a firmware with a ROM partition (stock
ESP32_GENERIC and RPI_PICO2 firmware have ROMFS support but no partition); a board without
one is refused before anything is written.
The cluster key goes into config.json on the board and nowhere else: not in arguments,
logs or this command's output.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from microswarm.keys import DEFAULT_CLUSTER


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", required=True, help="board definition (boards/NAME.json)")
    parser.add_argument("--port", required=True,
                        help="serial port (/dev/ttyACM0, a pty) or URL (socket://host:port)")
    parser.add_argument("--master", default="",
                        help="HOST:PORT the node dials; empty: UDP discovery or serial link")
    parser.add_argument("--link", choices=("tcp", "serial"), default=None,
                        help="node link (default: tcp with --master, else serial)")
    parser.add_argument("--key-file", type=Path, required=True,
                        help="cluster key file: hex text or raw bytes (microswarm keygen)")
    parser.add_argument("--node-id", default=None,
                        help="node name (default: the board's name and the end of its "
                             "machine.unique_id(), e.g. w5500-evb-pico2-4f1a2b)")
    parser.add_argument("--cluster", default=DEFAULT_CLUSTER,
                        help="cluster name (default %(default)s)")
    parser.add_argument("--slots", type=int, default=None, help="tasks the node holds at once")
    parser.add_argument("--control", default=None,
                        help="master's control endpoint HOST:PORT: wait for a TCP node to join")
    parser.add_argument("--source", action="store_true",
                        help="copy .py sources instead of mpy-cross output")
    parser.add_argument("--no-native", action="store_true", help="leave the native module out")
    parser.add_argument("--kernels", action="append", default=[], metavar="DIR",
                        help="a kernel package folder to deploy with the firmware (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="compare with the board and list what would change; copy nothing")
    parser.add_argument("--romfs", action="store_true",
                        help="put the .mpy modules in one ROMFS image in the board's ROM "
                             "partition (imported in place from /rom, not copied into the "
                             "heap); needs a firmware with a ROM partition")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the node")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the node after the reset (default 30)")


def run(args: argparse.Namespace) -> int:
    import sys

    from microswarm.deploy.build import BuildError
    from microswarm.deploy.deploy import DeployOptions, deploy
    from microswarm.deploy.mpremote import MpremoteError
    from microswarm.deploy.sync import DeployError
    from microswarm.kernelpkg import KernelPackageError
    from microswarm.keys import KeyFileError, read_key

    try:
        key = read_key(args.key_file)
    except KeyFileError as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    options = DeployOptions(
        board=args.board,
        port=args.port,
        key=key,
        master=args.master,
        link=args.link or ("tcp" if args.master else "serial"),
        node_id=args.node_id,
        cluster=args.cluster,
        slots=args.slots,
        control=args.control,
        compiled=not args.source,
        native=not args.no_native,
        kernels=list(args.kernels),
        dry_run=args.dry_run,
        romfs=args.romfs,
        wait=not args.no_wait,
        timeout=args.timeout,
    )
    started = time.monotonic()
    try:
        report = deploy(options, out=print)
    except (BuildError, DeployError, MpremoteError, TimeoutError, ValueError,
            KernelPackageError) as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    print(f"done in {time.monotonic() - started:.1f} s: {report.summary()}")
    return 0
