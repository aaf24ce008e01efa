"""Fetch the dashboard's JavaScript library from the npm registry at its pinned version and
check it against the pinned hash (the file is committed; rerun this only to update it).

  python tools/vendor_js.py           # verify the committed copy, fetch it when missing
  python tools/vendor_js.py --fetch   # fetch again with `npm pack`, then verify

Chart.js is MIT licensed; its licence sits beside the file.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE, VERSION = "chart.js", "4.6.1"
MEMBER = "package/dist/chart.umd.min.js"
SHA256 = "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"
STATIC = Path(__file__).resolve().parents[1] / "host/microswarm/master/dashboard/static"
TARGET = STATIC / f"chart-{VERSION}.umd.min.js"
LICENSE = STATIC / f"chart-{VERSION}.LICENSE.md"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch() -> None:
    if not shutil.which("npm"):
        raise SystemExit("npm is needed to fetch the package (apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=tmp,
                       check=True, capture_output=True, timeout=300)
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as tar:
            TARGET.write_bytes(tar.extractfile(MEMBER).read())
            LICENSE.write_bytes(tar.extractfile("package/LICENSE.md").read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetch", action="store_true", help="fetch even if present")
    args = parser.parse_args()
    if args.fetch or not TARGET.exists():
        fetch()
    if digest(TARGET) != SHA256:
        print(f"{TARGET.name}: sha256 {digest(TARGET)} is not the pinned {SHA256}",
              file=sys.stderr)
        return 1
    print(f"{TARGET.name}: {PACKAGE} {VERSION}, sha256 matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
