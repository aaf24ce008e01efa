"""Boot entry of a microswarm node: load the kernel packages on the flash and settle the
kernels' versions (msw_boot.py, dropped afterwards), then run the worker (worker.py)."""
import sys

import msw_boot

msw_boot.load_installed()
del msw_boot
sys.modules.pop("msw_boot", None)

import worker  # noqa: E402

worker.main()
