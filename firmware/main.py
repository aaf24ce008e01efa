"""Boot entry of a microswarm node: load the kernel packages on the flash (kpkg_*.json,
see msw_kernel.py), then run the worker (see worker.py)."""
import msw_kernel

msw_kernel.load_installed()

import worker  # noqa: E402

worker.main()
