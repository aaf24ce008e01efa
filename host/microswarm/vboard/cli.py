"""Run the firmware on a virtual board: the MicroPython unix port with the board's heap,
its flash in a folder, and a serial port (a pty) that mpremote and the master can open.
A WIZnet board's driver talks to a model of its chip on an emulated SPI bus.

  microswarm vboard --board unix --link tcp --master 127.0.0.1:5880 --key-file cluster.key
  microswarm vboard --board w5500-evb-pico2 --link tcp --master 127.0.0.1:5880 \\
      --key-file cluster.key
  microswarm vboard --link serial --key-file cluster.key        # master opens the pty
  microswarm vboard --blank --flash ./flash --tcp-port 7000     # empty board for deploy
  microswarm vboard --link serial --key-file cluster.key --kernels examples/kernels

The port's path and a stable symlink (FLASH.serial, next to the flash folder) are printed
at start, and every error the board prints on its console; Ctrl-C stops the board.
`kill -USR1 PID` presses its reset button.
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
    parser.add_argument("--node-id", default=None,
                        help="node name (default: the board's name and unique id, which "
                             "comes from the flash folder: unix-1a2b3c)")
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
    parser.add_argument("--source", action="store_true",
                        help="lay out .py sources instead of .mpy compiled as deploy ships them")
    parser.add_argument("--tcp-port", type=int, default=None,
                        help="also serve the console on 127.0.0.1:N (socket://127.0.0.1:N)")
    parser.add_argument("--heap", type=int, default=None,
                        help="heap bytes (default: the board's heap_bytes)")


def run(args: argparse.Namespace) -> int:
    from microswarm import bundle, paths
    from microswarm.keys import KeyFileError, read_key
    from microswarm.vboard.board import install_layout
    from microswarm.vboard.nic import NicError
    from microswarm.vboard.supervisor import (
        Supervisor,
        SupervisorError,
        install_signal_handlers,
        link_path_for,
    )

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
        node_id = args.node_id or bundle.default_node_id(args.board, bundle.flash_uid(flash))
        config = bundle.render_config(
            node_id, args.cluster, key, args.master, args.link,
            slots=args.slots,
        )
        install_layout(flash, args.board, config, compiled=not args.source,
                       native=not args.no_native, kernels=args.kernels)

    def announce(event: dict) -> None:
        if event["event"] == "ready":
            name = "" if args.blank else f" node {node_id!r},"
            print(f"virtual board {args.board!r},{name} flash {event['flash']}")
            print(f"  serial port: {event['serial']}  (link: {event['link']})")
            if event.get("tcp_port"):
                print(f"  console:     socket://127.0.0.1:{event['tcp_port']}")
            if event.get("nic"):
                print(f"  network:     {event['nic'].upper()} chip model on the SPI bus, "
                      "bridged to this machine's loopback")
            print(f"  supervisor pid {event['pid']}: Ctrl-C stops, SIGUSR1 resets")
        elif event["event"] == "vm":
            print(f"  VM pid {event['pid']} started ({event['reason']})")
        elif event["event"] == "dhcp":
            print(f"  the board's chip took {event['address']} by DHCP")
        elif event["event"] == "console-error":
            print(f"  board says: {event['text']}")
        sys.stdout.flush()

    try:
        supervisor = Supervisor(
            flash=flash,
            micropython=paths.micropython_command(),
            heap_bytes=args.heap or board.get("heap_bytes"),
            tcp_port=args.tcp_port,
            link_path=link_path_for(flash),
            on_event=announce,
            board_def=board,
        )
    except (SupervisorError, NicError) as exc:
        print(f"vboard: {exc}", file=sys.stderr)
        return 1
    install_signal_handlers(supervisor)
    supervisor.serve()
    return 0
