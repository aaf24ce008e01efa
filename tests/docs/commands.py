"""Every command a user is told to type: the shell blocks of README.md and docs/*.md, the
examples in the CLI's help texts, and the commands in comments of example files; and a
shell that runs them as written, in a folder and network namespace of their own."""

from __future__ import annotations

import os
import pty
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHELL_FENCES = ("```sh", "```bash", "```shell", "```console")
TOOLS = ("microswarm", "python", "make", "mpremote", "sed")


@dataclass(frozen=True)
class Told:
    """A command the project tells its users to type, and where."""

    command: str
    source: str  # path relative to the repository, and line

    @property
    def path(self) -> str:
        return self.source.rsplit(":", 1)[0]


def _strip(line: str) -> str:
    line = line.strip().removeprefix("$ ")
    return re.sub(r"\s+#.*$", "", line).strip()


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines, a line ending in a backslash joined with the next."""
    pending, start = "", 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.rstrip().endswith("\\"):
            pending, start = pending + line.rstrip()[:-1].rstrip("\\ ") + " ", start or n
            continue
        yield (start or n), (pending + line.strip() if pending else line)
        pending, start = "", 0


def _docs() -> Iterator[Told]:
    """Shell blocks' lines, and lines of other unlabelled blocks that begin with a tool."""
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        fence = None
        for n, line in _lines(doc):
            text = line.strip()
            if text.startswith("```"):
                fence = None if fence is not None else text
                continue
            if fence is None or not text or text.startswith("#"):
                continue
            if fence in SHELL_FENCES or (fence == "```" and text.split()[0] in TOOLS):
                yield Told(_strip(line), f"{doc.relative_to(REPO)}:{n}")


def _help_texts() -> Iterator[Told]:
    """Indented `microswarm ...` lines of the CLI modules' docstrings (their --help)."""
    for module in sorted((REPO / "host" / "microswarm").rglob("*.py")):
        for n, line in _lines(module):
            if re.match(r"^ {2,}microswarm [a-z]", line):
                yield Told(_strip(line), f"{module.relative_to(REPO)}:{n}")


def _examples() -> Iterator[Told]:
    """Commands quoted with backticks in the comments of example files."""
    for path in sorted((REPO / "examples").rglob("*")):
        if path.suffix not in (".toml", ".py", ".c"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for found in re.finditer(r"`((?:" + "|".join(TOOLS) + r") [^`]+)`", line):
                yield Told(found.group(1).strip(), f"{path.relative_to(REPO)}:{n}")


def told() -> list[Told]:
    return [*_docs(), *_help_texts(), *_examples()]


def synopsis(command: str) -> bool:
    """A usage pattern rather than a command (`...`, [optional], UPPER placeholders)."""
    return "..." in command or "[" in command or bool(re.search(r"\b[A-Z]{3,}\b", command))


class Shell:
    """Runs commands as a user would, from `cwd`: `microswarm` and `python` are the test's
    own environment's; `&` at the end starts a command in the background. `prefix` puts
    every process in a network namespace (the documented ports are fixed)."""

    def __init__(self, cwd: Path, prefix: list[str]) -> None:
        self.cwd = cwd
        self.prefix = prefix
        self.background: list[Background] = []
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}

    def argv(self, command: str) -> list[str]:
        words = shlex.split(command.removesuffix("&").strip())
        if words[0] == "python":
            words[0] = sys.executable
        elif words[0] == "microswarm":
            words[0] = str(Path(sys.executable).parent / "microswarm")
        return [*self.prefix, *words]

    def run(self, command: str, timeout: float = 120) -> str:
        """Run to the end; returns stdout; a failure says which command and why."""
        if command.endswith("&"):
            self.start(command)
            return ""
        done = subprocess.run(self.argv(command), cwd=self.cwd, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        assert done.returncode == 0, (
            f"`{command}` exited {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            + "".join(f"\n--- `{p.command}` said:\n{p.output[-1500:]}" for p in self.background))
        return done.stdout

    def start(self, command: str, terminal: bool = False) -> Background:
        """Start in the background; `terminal`: on a pty, as a user's screen (a live view
        draws only there)."""
        proc = Background(command, self.argv(command), self.cwd, self.env, terminal)
        self.background.append(proc)
        return proc

    def read_until(self, proc: Background, needle: str, timeout: float = 90) -> str:
        """Its output up to the moment it holds `needle`."""
        deadline = time.monotonic() + timeout
        while needle not in proc.output:
            assert proc.poll() is None, f"`{proc.command}` ended:\n{proc.output[-3000:]}"
            assert time.monotonic() < deadline, (
                f"`{proc.command}`: no {needle!r} in {timeout} s:\n{proc.output[-3000:]}")
            time.sleep(0.05)
        return proc.output

    def stop(self, proc: Background) -> str:
        """Ctrl-C to a background command and its children; returns all its output."""
        proc.stop()
        return proc.output

    def stop_all(self) -> None:
        for proc in reversed(self.background):
            proc.stop()


class Background(subprocess.Popen):
    """A command started with `&`: its own process group, its output gathered as it comes."""

    def __init__(self, command: str, argv: list[str], cwd: Path, env: dict,
                 terminal: bool = False) -> None:
        if terminal:
            self._screen, there = pty.openpty()
            env = {**env, "COLUMNS": "140", "LINES": "60", "TERM": "xterm-256color"}
            super().__init__(argv, cwd=cwd, env=env, stdin=there, stdout=there, stderr=there,
                             start_new_session=True)
            os.close(there)
        else:
            self._screen = None
            super().__init__(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.command = command
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        fd = self._screen if self._screen is not None else self.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # a pty whose other side closed
                data = b""
            if not data:
                break
            self.output += data.decode(errors="replace")

    def stop(self) -> None:
        if self.poll() is None:
            os.killpg(self.pid, signal.SIGINT)
            try:
                self.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.wait(10)
        self._reader.join(10)


class Namespace:
    """A network namespace of its own with loopback up (root, `unshare`, `nsenter`), so the
    documented fixed ports are free whatever else runs; None where it cannot be made."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c",
             "ip link set lo up 2>/dev/null || ifconfig lo up; echo up; exec sleep 900"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if self.holder.stdout.readline().strip() != "up":
            self.close()
            raise OSError("no network namespace")
        self.prefix = ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--"]

    @staticmethod
    def possible() -> bool:
        return os.geteuid() == 0 and bool(shutil.which("unshare") and shutil.which("nsenter"))

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


def ports_free(ports: tuple[int, ...]) -> bool:
    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True
