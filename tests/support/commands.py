"""Every command a user is told to type: the shell blocks of README.md and docs/*.md, the
examples in the CLI's help texts, and the commands in comments of example files; and a
shell that runs them as written, in a folder and network namespace of their own.

The one harness of the tests that run documented commands (tests/docs, and the tests that
run a doc's blocks in order: tests/deploy/test_key_workflow.py,
tests/kernels/test_first_kernel.py); `tests` is on pytest's pythonpath, so they import it as
`support.commands`."""

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
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@dataclass(frozen=True)
class Block:
    """A fenced block of a doc: its fence (```sh), the line it opens on, the commands in it."""

    fence: str
    line: int
    commands: tuple[Told, ...]

    @property
    def shell(self) -> bool:
        return self.fence in SHELL_FENCES


def blocks(doc: Path) -> list[Block]:
    """A doc's fenced blocks in order, with their commands: the lines of a shell block, and
    the lines of an unlabelled block that begin with a tool (no comments, no blank lines)."""
    found: list[Block] = []
    fence, opened, commands = None, 0, []
    for n, line in _lines(doc):
        text = line.strip()
        if text.startswith("```"):
            if fence is not None:
                found.append(Block(fence, opened, tuple(commands)))
                fence = None
            else:
                fence, opened, commands = text, n, []
            continue
        if fence is None or not text or text.startswith("#"):
            continue
        if fence in SHELL_FENCES or (fence == "```" and text.split()[0] in TOOLS):
            commands.append(Told(_strip(line), f"{doc.relative_to(REPO)}:{n}"))
    return found


def shell_commands(doc: Path, after: str | None = None) -> list[str]:
    """The commands of a doc's shell blocks in order; with `after`, only those of the first
    shell block below the line that holds that text."""
    if after is None:
        return [t.command for b in blocks(doc) if b.shell for t in b.commands]
    at = [n for n, line in enumerate(doc.read_text().splitlines(), 1) if after in line]
    below = [b for b in blocks(doc) if b.shell and at and b.line > at[0]]
    assert below, f"{doc.name}: no shell block below {after!r}"
    return [t.command for t in below[0].commands]


def _docs() -> Iterator[Told]:
    """Shell blocks' lines, and lines of other unlabelled blocks that begin with a tool."""
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in blocks(doc):
            yield from block.commands


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


# The documented fixed ports: the master's (TCP, UDP, control, client, dashboard) and the
# console of docs/deploy.md's blank virtual board.
PORTS = (5880, 5881, 5882, 5883, 5884, 7000)

# What a command started in the background prints once it serves, by its subcommand.
READY = {"master": "listening", "vboard": "serial port:"}


class Shell:
    """Runs commands as a user would, from `cwd`: `microswarm` and `python` are the test's
    own environment's; `&` at the end starts a command in the background. `prefix` puts
    every process in a network namespace (the documented ports are fixed). `transcript`
    holds each command run to the end with all it printed (stdout, then stderr)."""

    def __init__(self, cwd: Path, prefix: list[str]) -> None:
        self.cwd = cwd
        self.prefix = prefix
        self.background: list[Background] = []
        self.transcript: list[tuple[str, str]] = []
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
        self.transcript.append((command, done.stdout + done.stderr))
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

    def run_in_order(self, commands: list[str], timeout: float = 120) -> None:
        """A doc's commands as a user types them, one after the other: each to the end, or
        one that ends in `&` in the background until it says it serves (READY)."""
        for command in commands:
            if command.endswith("&"):
                self.read_until(self.start(command), READY[command.split()[1]])
            else:
                self.run(command, timeout)

    def poll(self, command: str, *needles: str, timeout: float = 60) -> str:
        """Run `command` again and again until its output holds every needle (a node that
        is still joining); returns that output."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.run(command)
            if all(needle in out for needle in needles):
                return out
            assert time.monotonic() < deadline, f"`{command}`: no {needles} in {timeout} s:\n{out}"
            time.sleep(0.1)  # (each run is a process start, 0.2-0.5 s, already)

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


@contextmanager
def user_shell(cwd: Path, ports: tuple[int, ...] = ()) -> Iterator[Shell]:
    """A Shell from `cwd` whose background commands are stopped at the end. Commands that
    listen on the documented fixed `ports` run in a network namespace of their own; where
    none can be made, here if those ports are free, else the test is skipped."""
    namespace = None
    if ports and Namespace.possible():
        with suppress(OSError):
            namespace = Namespace()
    if namespace is None and not ports_free(ports):
        pytest.skip(f"no network namespace can be made here and one of the ports {ports} "
                    "is taken: the documented commands listen on them")
    sh = Shell(cwd, namespace.prefix if namespace else [])
    try:
        yield sh
    finally:
        sh.stop_all()
        if namespace is not None:
            namespace.close()


class Namespace:
    """A network namespace of its own with loopback up (root, `unshare`, `nsenter`), so the
    documented fixed ports are free whatever else runs; OSError where it cannot be made."""

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
