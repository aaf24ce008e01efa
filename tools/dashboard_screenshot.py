"""The dashboard screenshot in docs/: a cluster like the demo's (VM boards over TCP and on
a pty, in-process nodes) renders Mandelbrot tiles while headless chromium looks at the page.

  python tools/dashboard_screenshot.py docs/dashboard.png
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import browser  # noqa: E402

from microswarm.master import Cluster  # noqa: E402
from microswarm.master.config import ClusterSpec, VirtualGroup  # noqa: E402
from microswarm.master.jobs import mandelbrot  # noqa: E402


def main(out: Path) -> None:
    spec = ClusterSpec(name="demo", key=os.urandom(16), tcp_port=0, udp_port=None,
                       control_port=None, client=None, http="127.0.0.1:0", inproc=2,
                       virtual=[VirtualGroup(3, "unix", "tcp", "vm-tcp", False),
                                VirtualGroup(1, "unix", "serial", "vm-serial", False)])
    with Cluster(spec) as cluster, browser.chromium(1400, 1250) as driver:
        driver.get(cluster.services.http_url)
        first = mandelbrot(320, 240, 20, 128)
        cluster.wait(cluster.submit_job(first.kernel, first.tasks))
        big = mandelbrot(640, 480, 20, 256)
        handle = cluster.submit_job(big.kernel, big.tasks)
        while handle.done < big_fraction(handle):
            time.sleep(0.1)
        time.sleep(1.0)  # one more update of the page
        driver.save_screenshot(str(out))
        cluster.wait(handle)


def big_fraction(handle) -> int:
    return int(handle.total * 0.6)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png"))
