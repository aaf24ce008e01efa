"""Run the firmware on a virtual board: the MicroPython unix port with the board's heap,
its flash in a folder, and a serial port (a pty) that mpremote and the master can open.

  microswarm vboard --board unix --link tcp --master 127.0.0.1:5880 --key-file cluster.key
  microswarm vboard --link serial --key-file cluster.key        # master opens the pty
  microswarm vboard --blank --flash ./flash --tcp-port 7000     # empty board for deploy
  microswarm vboard --link serial --key-file cluster.key --kernels examples/kernels

The port's path and a stable symlink (FLASH/../serial) are printed at start; Ctrl-C stops
the board. `kill -USR1 PID` presses its reset button.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from microswarm.keys import DEFAULT_CLUSTER


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", default="unix", help="board definition (boards/NAME.json)")
    parser.add_argument("--link", choices=("tcp", "serial"), default="tcp",
                        help="how the worker reaches the master (default tcp)")
    parser.add_argument("--master", default="",
                        help="HOST:PORT the worker dials (tcp link); empty: UDP discovery")
    parser.add_argument("--key-file", type=Path,
                        help="cluster key file: hex text or raw bytes (microswarm keygen)")
    parser.add_argument("--node-id", default="vboard1", help="node name (default vboard1)")
    parser.add_argument("--cluster", default=DEFAULT_CLUSTER,
                        help="cluster name (default %(default)s)")
    parser.add_argument("--slots", type=int, default=None, help="tasks held at once")
    parser.add_argument("--flash", type=Path, default=None,
                        help="folder that plays the flash (default: a temporary folder)")
    parser.add_argument("--blank", action="store_true",
                        help="install no firmware: keep the flash folder as it is")
    parser.add_argument("--no-native", action="store_true", help="leave the native module out")
    parser.add_argument("--kernels", action="append", default=[], metavar="DIR",
                        help="a kernel package folder to load beside the firmware (repeatable)")
    parser.add_argument("--tcp-port", type=int, default=None,
                        help="also serve the console on 127.0.0.1:N (socket://127.0.0.1:N)")
    parser.add_argument("--heap", type=int, default=None,
                        help="heap bytes (default: the board's heap_bytes)")


def run(args: argparse.Namespace) -> int:
    from microswarm import bundle, paths
    from microswarm.keys import KeyFileError, read_key
    from microswarm.vboard.supervisor import Supervisor, install_signal_handlers

    board = paths.load_board(args.board)
    flash = args.flash or Path(tempfile.mkdtemp(prefix="msw-vboard-")) / "flash"
    flash.mkdir(parents=True, exist_ok=True)
    if not args.blank:
        if args.key_file is None:
            raise SystemExit("--key-file is required unless --blank")
        try:
            key = read_key(args.key_file)
        except KeyFileError as exc:
            raise SystemExit(f"vboard: {exc}") from None
        config = bundle.render_config(
            args.node_id, args.cluster, key, args.master, args.link,
            slots=args.slots,
        )
        files = bundle.layout(args.board, config, args.kernels)
        if args.no_native:
            files.pop(bundle.NATIVE_MODULE, None)
        bundle.write_layout(flash, files)

    def announce(event: dict) -> None:
        if event["event"] == "ready":
            print(f"virtual board {args.board!r} (flash {event['flash']})")
            print(f"  serial port: {event['serial']}  (link: {event['link']})")
            if event.get("tcp_port"):
                print(f"  console:     socket://127.0.0.1:{event['tcp_port']}")
            print(f"  supervisor pid {event['pid']}: Ctrl-C stops, SIGUSR1 resets")
        elif event["event"] == "vm":
            print(f"  VM pid {event['pid']} started ({event['reason']})")
        sys.stdout.flush()

    supervisor = Supervisor(
        flash=flash,
        micropython=paths.micropython_command(),
        heap_bytes=args.heap or board.get("heap_bytes"),
        tcp_port=args.tcp_port,
        link_path=flash.parent / "serial",
        on_event=announce,
    )
    install_signal_handlers(supervisor)
    supervisor.serve()
    return 0
