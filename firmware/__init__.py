"""The MicroPython worker. On a board these modules are top-level; on the host this folder is
importable as microswarm.firmware so in-process, local and simulated nodes run the very same
kernels and node engine. Never deployed.

The firmware's modules import their siblings by bare name (`import cbor`, `from msgdefs
import ...`, `from msw_kernel import kernel`), as a board sees them. So that they import
unchanged here too, those they name are registered under those bare names: the codec's two,
and the kernel registry, so that kernels.py and users' kernel packages register in one
registry on the host as on a board (and the registry's writing half, msw_boot, through
which they register). The engine's parts that it loads when it needs them
(`import engine_join`, `import engine_log`, `import engine_chunks`, `import
engine_cancel`, and the codec's
`import frame_chunks`) are registered too: a
bare name that is not, looked up again at every join, costs CPython a search of every
sys.path entry before the fallback import (about 6% of `microswarm bench sim`'s CPU). A
built-in kernel's version is the content hash of the file that defines it (kernels.py,
kernels_small.py), as on a board.
"""

import sys
from pathlib import Path

from . import msgdefs

if sys.modules.setdefault("msgdefs", msgdefs) is not msgdefs:
    raise ImportError("another module named 'msgdefs' is loaded: the firmware needs its own")

from . import cbor  # noqa: E402 (after msgdefs is registered)

if sys.modules.setdefault("cbor", cbor) is not cbor:
    raise ImportError("another module named 'cbor' is loaded: the firmware needs its own")

from . import msw_texts  # noqa: E402  (cbor.text() imports it by its board name)

sys.modules.setdefault("msw_texts", msw_texts)

from . import msw_kernel  # noqa: E402

sys.modules.setdefault("msw_kernel", msw_kernel)

from . import engine_cancel, engine_chunks, engine_join, engine_log, frame_chunks  # noqa: E402

sys.modules.setdefault("engine_cancel", engine_cancel)
sys.modules.setdefault("engine_join", engine_join)
sys.modules.setdefault("engine_log", engine_log)
sys.modules.setdefault("engine_chunks", engine_chunks)
sys.modules.setdefault("frame_chunks", frame_chunks)

from . import msw_boot  # noqa: E402  (it imports msw_kernel by its board name)

sys.modules.setdefault("msw_boot", msw_boot)  # (msw_kernel.kernel registers through it)

for _stem in ("kernels", "kernels_small"):
    msw_kernel.versions.setdefault(_stem, msw_boot.file_hash(str(Path(__file__).parent
                                                                 / (_stem + ".py"))))
