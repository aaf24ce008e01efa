"""The MicroPython worker. On a board these modules are top-level; on the host this folder is
importable as microswarm.firmware so in-process, local and simulated nodes run the very same
kernels and node engine. Never deployed.

The firmware's codec modules import their siblings by bare name (`import cbor`, `from
msgdefs import ...`), as a board sees them. So that they import unchanged here too, the two
they name are registered under those bare names; nothing else in the host uses them.
"""

import sys

from . import msgdefs

if sys.modules.setdefault("msgdefs", msgdefs) is not msgdefs:
    raise ImportError("another module named 'msgdefs' is loaded: the firmware needs its own")

from . import cbor  # noqa: E402 (after msgdefs is registered)

if sys.modules.setdefault("cbor", cbor) is not cbor:
    raise ImportError("another module named 'cbor' is loaded: the firmware needs its own")
