"""firmware/package.json: the firmware as an mpremote `mip` package.

    mpremote connect PORT mip install --target / ./firmware/package.json
    mpremote connect PORT mip install --target / github:OWNER/REPO/firmware/package.json

It lists the firmware modules by relative URL, so one file serves a checkout and a
repository URL. It carries no board.json or config.json (they hold a board's identity and
key): `microswarm deploy` writes those. Regenerate after adding a firmware module:

    python -m microswarm.deploy.package
"""

from __future__ import annotations

import json
import sys

from microswarm import __version__, bundle, paths


def package_json() -> str:
    names = [p.name for p in bundle.firmware_files()]
    urls = ",\n".join(f"  {json.dumps([name, name])}" for name in names)
    return (
        "{\n"
        f' "urls": [\n{urls}\n ],\n'
        ' "deps": [],\n'
        f' "version": {json.dumps(__version__)}\n'
        "}\n"
    )


def main() -> int:
    target = paths.firmware_dir() / "package.json"
    text = package_json()
    if target.is_file() and target.read_text() == text:
        print(f"{target.name} is up to date")
        return 0
    target.write_text(text)
    print(f"wrote {target.name} ({len(json.loads(text)['urls'])} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
