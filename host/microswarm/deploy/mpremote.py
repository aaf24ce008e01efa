"""mpremote, run as a subprocess under a timeout.

mpremote on a /dev/pts path waits forever for an answer that never comes, so every call
here has a deadline and the child is killed when it passes. Errors come back as
`MpremoteError` with mpremote's own message.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_TIMEOUT_S = 30.0


class MpremoteError(RuntimeError):
    """mpremote failed or timed out; the message says which command and why."""


def mpremote_command() -> str:
    beside = Path(sys.executable).parent / "mpremote"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpremote")
    if found:
        return found
    raise MpremoteError("mpremote is not installed (pip install mpremote)")


class Mpremote:
    """One board's port (a device path or a pyserial URL such as socket://host:port)."""

    def __init__(self, port: str, timeout: float = DEFAULT_TIMEOUT_S,
                 resume: bool = False) -> None:
        """`resume`: every command chain starts with mpremote's `resume` (no soft reset
        first), for a board whose file system its REPL mounted (the QEMU test board's)."""
        self.port = port
        self.timeout = timeout
        self.resume = resume

    def run(self, *args: str, timeout: float | None = None) -> str:
        """Run `mpremote connect PORT ARGS...`; return its standard output."""
        return self.run_chain([list(args)], timeout=timeout)

    def run_chain(self, commands: Sequence[Sequence[str]], timeout: float | None = None) -> str:
        """Several mpremote commands on one connection, joined with '+'."""
        argv = [mpremote_command(), "connect", self.port]
        if self.resume:
            commands = [["resume"], *commands]
        for i, command in enumerate(commands):
            if i:
                argv.append("+")
            argv.extend(command)
        limit = self.timeout if timeout is None else timeout
        try:
            proc = subprocess.run(
                argv, capture_output=True, timeout=limit, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            raise MpremoteError(
                f"mpremote {_describe(commands)} on {self.port} gave no answer in {limit:g} s"
            ) from exc
        out = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip() or out.strip()
            raise MpremoteError(
                f"mpremote {_describe(commands)} on {self.port} failed "
                f"(exit {proc.returncode}): {err[-800:]}"
            )
        return out

    def exec(self, code: str, timeout: float | None = None) -> str:
        return self.run("exec", code, timeout=timeout)

    def put(self, local: Path, remote: str, timeout: float | None = None) -> None:
        self.run("fs", "cp", str(local), ":" + remote, timeout=timeout)

    def reset(self, timeout: float | None = None) -> None:
        """Hard reset (machine.reset()); mpremote does not wait for the board to come back."""
        self.run("reset", timeout=timeout)

    def soft_reset(self, timeout: float | None = None) -> None:
        self.run("soft-reset", timeout=timeout)


def _describe(commands: Sequence[Sequence[str]]) -> str:
    words = " + ".join(" ".join(c[:2]).splitlines()[0] for c in commands)
    return words if len(words) < 80 else words[:77] + "..."
