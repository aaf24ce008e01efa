"""Test support shipped with the package: the pytest plugin (plugin.py) and the board
conformance suite it runs against a virtual or a real board (docs/hil.md)."""
