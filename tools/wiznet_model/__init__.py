"""Register-level models of the WIZnet W5500 and W6100 for testing the firmware driver."""

from .chip import Chip
from .server import ModelServer

__all__ = ["Chip", "ModelServer"]
