"""Link a relocatable ELF object into a MicroPython dynamic native module (.mpy v6.3),
or print what a .mpy holds.

Usage:
  python tools/mpy_link.py link --arch x64 --fun-table fun_table.json \
      --qstrs module.qstrs -o msw_native.mpy merged.o
  python tools/mpy_link.py dump msw_native.mpy

`--qstrs` names a file with the module's non-static qstrs, one a line, in the order of the
config header (tools/build_native.py writes both). `--fun-table` is the JSON map of
mp_fun_table member -> index the build reads from the MicroPython headers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from natmod.elflink import LinkError, link_elf  # noqa: E402
from natmod.mpyfile import read_mpy, write_mpy  # noqa: E402


def cmd_link(args: argparse.Namespace) -> int:
    fun_table = json.loads(Path(args.fun_table).read_text())
    qstrs = Path(args.qstrs).read_text().split()
    try:
        module = link_elf(Path(args.object), args.arch, fun_table, qstrs, args.source_name)
    except LinkError as exc:
        print(f"mpy_link: {exc}", file=sys.stderr)
        return 1
    Path(args.output).write_bytes(write_mpy(module))
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    module = read_mpy(Path(args.mpy).read_bytes())
    print(f"arch {module.arch}; source {module.source_name}")
    print(f"text {len(module.text)} bytes; bss {module.bss_size} bytes")
    print(f"qstrs: {' '.join(str(q) for q in module.qstrs)}")
    for reloc in module.relocs:
        print(f"  word {reloc.word:5d} += {reloc.dest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    link = sub.add_parser("link", help="ELF object -> .mpy")
    link.add_argument("object")
    link.add_argument("--arch", required=True)
    link.add_argument("--fun-table", required=True)
    link.add_argument("--qstrs", required=True)
    link.add_argument("--source-name", default="msw_native.c")
    link.add_argument("-o", "--output", required=True)
    link.set_defaults(func=cmd_link)
    dump = sub.add_parser("dump", help="print what a .mpy holds")
    dump.add_argument("mpy")
    dump.set_defaults(func=cmd_dump)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
