"""The MicroPython worker. On a board these modules are top-level; on the host this folder is
importable as microswarm.firmware so in-process nodes run the very same kernels. Never deployed."""
