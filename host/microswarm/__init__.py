"""microswarm: distributed compute across microcontrollers and simulated nodes."""

__version__ = "0.1.0"
