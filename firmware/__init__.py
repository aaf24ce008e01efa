"""The MicroPython worker. On a board these modules are top-level; on the host this folder is
importable as microswarm.firmware so in-process nodes run the very same kernels. Never deployed.

The kernel registry is also made importable under its board name, `msw_kernel`, so that
kernels.py and users' kernel packages register in one registry on the host as on a board;
the built-in kernels' version is the content hash of kernels.py, as on a board."""

import sys
from pathlib import Path

from . import msw_kernel

sys.modules.setdefault("msw_kernel", msw_kernel)

from . import msw_boot  # noqa: E402  (it imports msw_kernel by its board name)

msw_kernel.versions.setdefault("kernels", msw_boot.file_hash(str(Path(__file__).parent
                                                                 / "kernels.py")))
