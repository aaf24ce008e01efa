"""The `microswarm` command: a thin dispatcher over small subcommand modules.

Each subcommand lives in its own module, which provides `configure(parser)` to declare
its arguments and `run(args) -> int` to do the work. Modules import their heavy
dependencies inside `run`, so `microswarm --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("microswarm.demo", "the main job: a mixed virtual cluster renders a Mandelbrot set"),
    "master": ("microswarm.master.cli_master", "run a master that boards and virtual nodes join"),
    "up": ("microswarm.master.cli_up", "start a master plus the virtual part of a cluster file"),
    "keygen": ("microswarm.cli_keygen", "make a cluster key file (random, hex, mode 0600)"),
    "nodes": ("microswarm.master.cli_nodes", "list the nodes of a running master"),
    "run": ("microswarm.master.cli_run", "run a job here, on a cluster file or a running master"),
    "jobs": ("microswarm.master.cli_jobs", "list the jobs of a running master"),
    "cancel": ("microswarm.master.cli_cancel", "cancel a job on a running master"),
    "top": ("microswarm.master.cli_top", "a live terminal view of a running master"),
    "logs": ("microswarm.master.cli_logs", "the log lines a running master kept for a node"),
    "vboard": ("microswarm.vboard.cli", "run the firmware on a virtual board (MicroPython VM)"),
    "deploy": ("microswarm.deploy.cli", "build and copy the firmware to a board with mpremote"),
    "native": ("microswarm.native_cli", "build a user's C kernel into a native module (.mpy)"),
    "sim": ("microswarm.sim.cli", "run a cluster simulation scenario"),
    "bench": ("microswarm.bench.cli", "run a benchmark and report figures (--json)"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Declare every command; import and configure only the one named in argv."""
    parser = argparse.ArgumentParser(
        prog="microswarm",
        description="Distributed compute on microcontrollers and simulated nodes.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.configure(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Ctrl-C stops every command, also one started with SIGINT ignored (a background job of
    # a shell without job control, some CI runners): Python keeps an inherited SIG_IGN, so
    # no KeyboardInterrupt came and `microswarm top` ran on after every Ctrl-C
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser(argv).parse_args(argv)
    import logging

    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
