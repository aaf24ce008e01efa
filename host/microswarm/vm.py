"""Run a script in the MicroPython VM (the unix port) and collect what it prints.

Tests, benchmarks and tools batch many cases into one script run this way, with the
board's heap (`-X heapsize`) and a folder playing the board's flash as working directory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from microswarm import paths


class VMError(RuntimeError):
    """The script did not finish cleanly; the message holds what it printed."""


def run_script(
    source: str,
    *,
    cwd: str | Path,
    heap: int | None = None,
    stdin: bytes = b"",
    timeout: float = 60,
    micropython: str | None = None,
) -> str:
    """Run `source` with `cwd` first on the VM's module path; return its stdout."""
    cmd = [micropython or paths.micropython_command()]
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    cmd += ["-c", "import sys; sys.path.insert(0, '')\n" + source]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        raise VMError(f"MicroPython exited {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}")
    return proc.stdout.decode()
