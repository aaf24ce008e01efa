"""The conformance suite (microswarm.testing.conformance, shipped in the package so users run
it from their own repository) against the board under test; fixtures: the pytest plugin."""

from microswarm.testing.conformance import *  # noqa: F403
