"""Make a cluster key file: 32 random bytes as hex text, readable by its owner only (0600).
Every command (master, up, vboard, deploy) and the cluster file's key_file read it.

  microswarm keygen cluster.key
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the key file to create")
    parser.add_argument("--force", action="store_true", help="replace an existing file")


def run(args: argparse.Namespace) -> int:
    import sys

    from microswarm.keys import KeyFileError, write_new_key

    try:
        key = write_new_key(args.file, force=args.force)
    except KeyFileError as exc:
        print(f"keygen: {exc}", file=sys.stderr)
        return 1
    print(f"wrote a {len(key)}-byte cluster key to {args.file} (mode 0600)")
    return 0
