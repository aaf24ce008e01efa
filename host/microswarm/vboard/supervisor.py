"""Supervisor of a virtual board: makes the MicroPython unix port behave like a board on a
serial port.

It owns two raw ptys. The *console* pty is the board's serial port: its path is what
mpremote, pyserial or the master's serial link open, and it stays the same across VM
restarts because the supervisor holds both of its ends. The *VM* pty is the unix port's
stdin/stdout. Bytes are relayed between them, with these corrections:

- a soft reset (Ctrl-D in a REPL, `sys.exit()`, `machine.soft_reset()`: the unix port
  exits with status 0) becomes a restart with a ``MPY: soft reboot`` banner that runs
  boot.py and main.py, or only boot.py and the raw REPL again when that was active;
- `machine.reset()` (exit status HARD_RESET_STATUS) and any crash become a fresh start;
- 0x03 from the console becomes SIGINT while MicroPython's interrupt key is enabled (the
  SIGINT bit of SigCgt in /proc/PID/status, read again with the VM stopped, so a program
  that turns the key off meanwhile gets a byte, not a signal that would end it); otherwise
  the byte reaches the program, which is how a worker with `micropython.kbd_intr(-1)` sees
  mpremote's ``\\r\\x03``;
- a slow reader holds the VM's output back (flow control), and output nobody reads is
  dropped instead of stalling the VM, as on a USB port with no host;
- console input waits while the VM boots (until main.py runs: as on a board, Ctrl-C is off
  while the boot code and a script compile, on while the script runs) or switches REPL
  modes, so it reaches main.py or the REPL in the order it was sent.

Optionally the console is also served on a TCP port (pyserial's ``socket://host:port``).
Run it with `python -m microswarm.vboard.supervisor` or through `microswarm vboard`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from microswarm import bundle
from microswarm.console import ConsoleErrors
from microswarm.vboard.bootstrap import HARD_RESET_STATUS, boot_source, machine_py
from microswarm.vboard.nic import BUS_MODULE, NicError, VirtualNic

log = logging.getLogger("microswarm.vboard")

SOFT_REBOOT_BANNER = b"MPY: soft reboot\r\n"
RAW_REPL_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_BANNER_TAIL = b'Type "help()" for more information.'
RAW_REPL_PROMPT = RAW_REPL_BANNER + b">"
SIGINT_MASK = 1 << (signal.SIGINT - 1)
INTERRUPT_REQUESTS = (b"\r\x03", b"\x03\x03")  # what mpremote writes to stop a program
READ_SIZE = 65536
# After a 0x03 reaches a program that disabled the interrupt key, or interrupts main.py,
# further console input is held back this long (or until main.py has returned to the
# REPL), so that neither the program nor the raw REPL that ran main.py takes the bytes
# mpremote sends next to enter the raw REPL.
INTERRUPT_HOLD_S = 0.3
# Console input after this much silence starts afresh (not inside a frame).
LINE_IDLE_S = 0.05
CRASH_BACKOFF_S = 1.0
# Console output waiting for a slow reader; past this the VM's output is not read.
BACKLOG_LIMIT = 256 * 1024
# A console that takes nothing for this long has no reader: its backlog is dropped.
STALL_DROP_S = 1.0
# Console input waits this long for boot.py to finish when no main.py will read it.
BOOT_PY_HOLD_S = 2.0
# A VM killed by SIGINT this soon after we sent one was interrupted as it left a program.
SIGINT_RACE_S = 1.0
# How long a VM may take to start its boot program, or to return to its REPL after it,
# before it is restarted.
BOOT_TIMEOUT_S = 20.0


class Phase(Enum):
    BOOTING = "booting"  # VM output discarded until the start marker
    RUNNING = "running"  # boot.py / main.py / REPL: output relayed
    ENDING = "ending"  # after the end marker: swallow the raw REPL's "\x04..\x04>"


class Reset(Enum):
    POWER_ON = "power-on"
    SOFT = "soft"
    HARD = "hard"
    CRASH = "crash"


@dataclass
class VmState:
    process: subprocess.Popen
    fd: int
    raw_wanted: bool
    start_marker: bytes
    end_marker: bytes
    main_marker: bytes
    phase: Phase = Phase.BOOTING
    main_done: bool = False  # boot.py/main.py have returned: a REPL reads the input
    main_reads_input: bool = False  # main.py runs: console input is for it from the start
    pending: bytearray = field(default_factory=bytearray)
    started: float = field(default_factory=time.monotonic)
    phase_since: float = field(default_factory=time.monotonic)
    inbox: bytearray = field(default_factory=bytearray)  # console input the VM has not taken
    wfd: int = -1  # a second descriptor of the VM's pty, polled for room to write

    def enter(self, phase: Phase) -> None:
        self.phase = phase
        self.phase_since = time.monotonic()


def interrupt_key_enabled(pid: int) -> bool:
    """True while the process catches SIGINT (MicroPython's interrupt key is enabled)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"SigCgt:"):
                    return bool(int(line.split()[1], 16) & SIGINT_MASK)
    except (OSError, ValueError):
        pass
    return False


def _process_state(pid: int) -> bytes:
    """The state letter of /proc/PID/stat (b"T": stopped), b"" when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return b""


def interrupt(pid: int) -> bool:
    """Interrupt the VM (our child) as Ctrl-C interrupts a board, if its interrupt key is
    enabled; False when it is not (the byte is data). A program may turn the key off between
    a look at SigCgt and the signal, and an uncaught SIGINT would end the VM where a board
    would have read a byte: so the VM is held still (SIGSTOP) while we look and signal."""
    if not interrupt_key_enabled(pid):
        return False
    frozen = _process_state(pid) == b"T"  # someone else stopped it: leave it stopped
    try:
        if not frozen:
            os.kill(pid, signal.SIGSTOP)
            os.waitid(os.P_PID, pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
        enabled = interrupt_key_enabled(pid)
        if enabled:
            _interrupt_main_thread(pid)  # taken by its handler when it runs again
        return enabled
    except (ProcessLookupError, ChildProcessError):
        return False  # it ended: its exit is handled on read
    finally:
        if not frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _await_interrupt_key(pid: int, timeout: float = 1.0) -> None:
    """Wait (briefly: the boot code turns the key on right after its marker) until the VM's
    interrupt key is enabled, so console bytes held during the boot meet main.py as a
    board's would: Ctrl-C is on from its first line."""
    deadline = time.monotonic() + timeout
    while not interrupt_key_enabled(pid) and time.monotonic() < deadline:
        time.sleep(0.0002)


def _interrupt_main_thread(pid: int) -> None:
    """SIGINT to the VM's main thread, as a board's Ctrl-C reaches its REPL's thread. Sent
    to the process, a signal may go to any thread (always another while the main one is
    stopped): in a worker's kernel thread it ends that thread and the worker goes on."""
    libc = ctypes.CDLL(None, use_errno=True)
    tgkill = getattr(libc, "tgkill", None)
    if tgkill is None or tgkill(pid, pid, signal.SIGINT) != 0:
        os.kill(pid, signal.SIGINT)


def _open_raw_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return master, slave


def _ack_at_once(client: socket.socket) -> None:
    """Acknowledge what the client sent at once rather than after Linux's delayed-ACK
    timer (up to 40 ms): a client that leaves Nagle's algorithm on (pyserial's socket://,
    which mpremote uses) holds each small write until the previous one is acknowledged, and
    mpremote's raw paste writes many. Linux clears the flag again as it sees fit, so it is
    set after every read; elsewhere there is no such option."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        client.setsockopt(socket.IPPROTO_TCP, quickack, 1)


class SupervisorError(RuntimeError):
    """The board cannot start (its flash folder is in use, its chip cannot be emulated)."""


def link_path_for(flash: Path) -> Path:
    """The stable name of a board's serial port: next to its flash folder and named after
    it, so boards whose flash folders share a parent do not take each other's link."""
    flash = flash.resolve()
    return flash.with_name(flash.name + ".serial")


def _lock_flash(flash: Path) -> int:
    """Hold an exclusive lock on the flash folder for the supervisor's life: two boards
    on one flash would overwrite each other's files."""
    fd = os.open(flash, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SupervisorError(
            f"flash folder {flash} is in use by another virtual board") from None
    return fd


def _die_with_parent() -> None:
    """In the VM child: SIGKILL when the supervisor goes away, however it goes."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


class Supervisor:
    """One virtual board: console pty, optional TCP console, and the VM it restarts."""

    def __init__(
        self,
        flash: Path,
        micropython: str,
        heap_bytes: int | None = None,
        tcp_port: int | None = None,
        tcp_host: str = "127.0.0.1",
        link_path: Path | None = None,
        on_event: Callable[[dict], None] | None = None,
        board_def: dict | None = None,
    ) -> None:
        self.flash = flash.resolve()
        self._flash_lock = _lock_flash(self.flash)
        try:
            self.nic = (VirtualNic(board_def, on_lease=self._leased)
                        if board_def and board_def.get("nic") else None)
        except BaseException:
            os.close(self._flash_lock)
            raise
        self.micropython = os.path.abspath(shutil.which(micropython) or micropython)
        self.heap_bytes = heap_bytes
        self.on_event = on_event or (lambda event: None)
        self.console_errors = ConsoleErrors()
        self.selector = selectors.DefaultSelector()
        self.console_fd, self._console_slave = _open_raw_pty()
        os.set_blocking(self.console_fd, False)
        self._console_wfd = os.dup(self.console_fd)
        self._backlog = bytearray()
        self._stalled_since = 0.0
        self._reading_vm = False
        self.console_path = os.ttyname(self._console_slave)
        self.link_path = link_path
        if link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                link_path.unlink()
            link_path.symlink_to(self.console_path)
        self.listener: socket.socket | None = None
        self.clients: list[socket.socket] = []
        if tcp_port is not None:
            self.listener = socket.create_server((tcp_host, tcp_port))
            self.listener.setblocking(False)
            self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self._sys_dir = tempfile.TemporaryDirectory(prefix="msw-vboard-sys-")
        self._reset_marker = b"\x1b[msw-reset:" + secrets.token_hex(8).encode() + b"]"
        bus = None
        if self.nic is not None:
            bus = BUS_MODULE
            Path(self._sys_dir.name, BUS_MODULE + ".py").write_text(self.nic.bus_source)
            self.nic.start()
            self.selector.register(self.nic.dhcp, selectors.EVENT_READ,
                                   lambda _: self.nic.dhcp.handle())
        Path(self._sys_dir.name, "machine.py").write_text(
            machine_py(self._reset_marker, bus, bundle.flash_uid(self.flash)))
        self.selector.register(self.console_fd, selectors.EVENT_READ, self._from_console)
        self.vm: VmState | None = None
        self.raw_active = False
        self._held = bytearray()
        self._holding = False
        self._hold_until = 0.0
        self._sigint_at = 0.0
        self._last_input: int | None = None  # last console byte passed to the VM
        self._last_input_at = 0.0
        self._mode_tail = b""
        self._fast_crashes = 0
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeups)
        self._requests: list[str] = []

    def _leased(self, address: str) -> None:
        log.info("DHCP: the board's chip took %s", address)
        self.on_event({"event": "dhcp", "address": address})

    @property
    def tcp_port(self) -> int | None:
        return self.listener.getsockname()[1] if self.listener else None

    # ---- life cycle -------------------------------------------------------------------

    def request(self, what: str) -> None:
        """Ask the loop, from a signal handler, to 'stop' or 'hard-reset'."""
        self._requests.append(what)
        if self._wake_w < 0:  # closed: a signal during close() has nothing left to wake
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def serve(self) -> None:
        """Run until stop is requested; starts the VM at power-on."""
        self.on_event(
            {
                "event": "ready",
                "serial": self.console_path,
                "link": str(self.link_path) if self.link_path else None,
                "tcp_port": self.tcp_port,
                "pid": os.getpid(),
                "flash": str(self.flash),
                "nic": self.nic.kind if self.nic else None,
            }
        )
        self._start_vm(Reset.POWER_ON, raw=False)
        while not self._stopping:
            timeout = self._next_timeout()
            for key, _ in self.selector.select(timeout):
                key.data(key.fileobj)
                if self._stopping:
                    break
            self._release_held_input_if_due()
            self._drop_stalled_output()
            self._check_boot_deadline()
        self.close()

    def close(self) -> None:
        self._stop_vm()
        for client in self.clients:
            client.close()
        if self.listener:
            self.listener.close()
        wake_w, self._wake_w = self._wake_w, -1  # before its number can be reused
        for fd in (self.console_fd, self._console_wfd, self._console_slave, self._wake_r,
                   wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link_path is not None:
            with contextlib.suppress(OSError):
                if self.link_path.is_symlink():
                    self.link_path.unlink()
        self._sys_dir.cleanup()
        if self.nic is not None:
            self.nic.close()
        self.selector.close()
        with contextlib.suppress(OSError):
            os.close(self._flash_lock)

    def _next_timeout(self) -> float | None:
        deadlines = []
        if self._holding and self._hold_until:
            deadlines.append(self._hold_until)
        if self.vm is not None and self.vm.phase is not Phase.RUNNING:
            deadlines.append(self.vm.phase_since + BOOT_TIMEOUT_S)
        if self._backlog:
            deadlines.append(self._stalled_since + STALL_DROP_S)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _drain_wakeups(self, _fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 64)
        while self._requests:
            what = self._requests.pop(0)
            if what == "stop":
                self._stopping = True
            elif what == "hard-reset" and self.vm is not None:
                log.info("hard reset requested")
                self._stop_vm()
                self._start_vm(Reset.HARD, raw=False)

    # ---- the VM -----------------------------------------------------------------------

    def _start_vm(self, reason: Reset, raw: bool, run_main: bool | None = None) -> None:
        command = [self.micropython]
        if self.heap_bytes:
            command += ["-X", f"heapsize={self.heap_bytes}"]
        master, slave = _open_raw_pty()
        try:
            process = subprocess.Popen(
                command,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env={**os.environ, **self.nic.env()} if self.nic else None,
                cwd=self.flash,
                close_fds=True,
                preexec_fn=_die_with_parent,
                # setsid(): where Linux shares the CPU out per setsid group first (autogroup),
                # the VM gets its own share, as a board has its own CPU, and its link thread
                # competes with its kernel thread only, not with every busy process of the host.
                start_new_session=True,
            )
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        nonce = secrets.token_hex(8).encode()
        run_main = not raw if run_main is None else run_main
        vm = VmState(
            main_reads_input=run_main and (self.flash / "main.py").exists(),
            process=process,
            fd=master,
            wfd=os.dup(master),
            raw_wanted=raw,
            start_marker=b"\x1b[msw-boot:" + nonce + b"]",
            end_marker=b"\x1b[msw-main-done:" + nonce + b"]",
            main_marker=b"\x1b[msw-main:" + nonce + b"]",
        )
        self.vm = vm
        self.raw_active = raw
        self._mode_tail = b""
        self.selector.register(master, selectors.EVENT_READ, self._from_vm)
        self._reading_vm = True
        source = boot_source(
            str(self.flash), self._sys_dir.name, vm.start_marker, vm.end_marker, run_main,
            vm.main_marker)
        # The friendly REPL reads Ctrl-A, the raw REPL reads the code up to Ctrl-D; it all
        # waits in the pty until the REPL reads it. Console input is held meanwhile and
        # queues behind it (see _advance), so it reaches main.py or the REPL, in order.
        self._write_vm(b"\x01" + source + b"\x04")
        log.info("VM pid %d started (%s%s)", process.pid, reason.value, ", raw REPL" if raw else "")
        self.on_event({"event": "vm", "pid": process.pid, "reason": reason.value, "raw": raw})

    def _stop_vm(self) -> None:
        vm, self.vm = self.vm, None
        if vm is None:
            return
        if self._reading_vm:
            self.selector.unregister(vm.fd)
            self._reading_vm = False
        if vm.inbox:
            self.selector.unregister(vm.wfd)
        if vm.process.poll() is None:
            vm.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            vm.process.wait(timeout=5)
        for fd in (vm.fd, vm.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _vm_exited(self) -> None:
        vm = self.vm
        assert vm is not None
        try:
            status = vm.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            vm.process.kill()
            status = vm.process.wait(timeout=5)
        raw = self.raw_active
        self._stop_vm()
        lived = time.monotonic() - vm.started
        if status == 0:
            self._fast_crashes = 0
            self._to_console(SOFT_REBOOT_BANNER)
            self._start_vm(Reset.SOFT, raw=raw)
            return
        if status == HARD_RESET_STATUS:
            self._fast_crashes = 0
            self._start_vm(Reset.HARD, raw=False)
            return
        if status == -signal.SIGINT and time.monotonic() - self._sigint_at < SIGINT_RACE_S:
            # The program ended between our look at SigCgt and the signal, and the REPL's
            # default action ended the VM. A board would have shown a prompt: so do we.
            log.info("Ctrl-C arrived as the program ended: VM restarted to its REPL")
            self._start_vm(Reset.SOFT, raw=raw, run_main=False)
            return
        how = f"signal {-status}" if status < 0 else f"status {status}"
        log.warning("VM pid %d ended with %s after %.1f s: restarting", vm.process.pid, how, lived)
        self._fast_crashes = self._fast_crashes + 1 if lived < CRASH_BACKOFF_S else 0
        if self._fast_crashes > 1:
            time.sleep(CRASH_BACKOFF_S)
        self._start_vm(Reset.CRASH, raw=False)

    def _check_boot_deadline(self) -> None:
        vm = self.vm
        if vm is None or vm.phase is Phase.RUNNING:
            return
        if time.monotonic() - vm.phase_since > BOOT_TIMEOUT_S:
            log.warning("VM pid %d stuck %s: restarting", vm.process.pid, vm.phase.value)
            self._stop_vm()
            self._start_vm(Reset.CRASH, raw=False)

    def _write_vm(self, data: bytes) -> None:
        """Queue bytes for the VM's stdin. What the VM does not take now waits in its inbox
        and goes out when the pty has room, so the loop never blocks on a VM that is busy
        writing its own output."""
        vm = self.vm
        if vm is None or not data:
            return
        if not vm.inbox:
            try:
                written = os.write(vm.fd, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                if exc.errno == errno.EIO:  # the VM is gone; its exit is handled on read
                    return
                raise
            if written == len(data):
                return
            data = data[written:]
            self.selector.register(vm.wfd, selectors.EVENT_WRITE, self._flush_vm_input)
        vm.inbox += data

    def _flush_vm_input(self, _fd: int) -> None:
        vm = self.vm
        if vm is None:
            return
        try:
            written = os.write(vm.fd, vm.inbox)
        except BlockingIOError:
            return
        except OSError:
            written = len(vm.inbox)  # the VM is gone; its exit is handled on read
        del vm.inbox[:written]
        if not vm.inbox:
            self.selector.unregister(vm.wfd)

    # ---- VM output ----------------------------------------------------------------------

    def _from_vm(self, fd: int) -> None:
        vm = self.vm
        if vm is None or fd != vm.fd:
            return
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self._vm_exited()
            return
        vm.pending += data
        self._advance(vm)

    def _advance(self, vm: VmState) -> None:
        """Route buffered VM output according to the boot phase."""
        while vm.pending:
            if vm.phase is Phase.BOOTING:
                at = vm.pending.find(vm.start_marker)
                if at < 0:
                    keep = len(vm.start_marker) - 1
                    del vm.pending[: max(0, len(vm.pending) - keep)]
                    return
                del vm.pending[: at + len(vm.start_marker)]
                vm.enter(Phase.RUNNING)
                if vm.main_reads_input:
                    self._hold_input()  # until main.py runs (main marker) or ends
                else:
                    # For the REPL once boot.py is done (or for a long boot.py, later).
                    self._hold_input(BOOT_PY_HOLD_S)
                continue
            if vm.phase is Phase.RUNNING:
                at = vm.pending.find(self._reset_marker)
                if at >= 0:
                    self._relay(bytes(vm.pending[:at]))
                    log.info("machine.reset() in VM pid %d", vm.process.pid)
                    self._stop_vm()
                    self._start_vm(Reset.HARD, raw=False)
                    return
                at = -1 if vm.main_done else vm.pending.find(vm.main_marker)
                if at >= 0:
                    self._relay(bytes(vm.pending[:at]))
                    del vm.pending[: at + len(vm.main_marker)]
                    if vm.main_reads_input:
                        _await_interrupt_key(vm.process.pid)
                        self._release_held_input()
                    continue
                at = -1 if vm.main_done else vm.pending.find(vm.end_marker)
                if at >= 0:
                    self._relay(bytes(vm.pending[:at]))
                    del vm.pending[: at + len(vm.end_marker)]
                    vm.enter(Phase.ENDING)
                    vm.main_done = True
                    self._hold_input()
                    continue
                keep = _partial_suffix(vm.pending, self._reset_marker)
                if not vm.main_done:
                    keep = max(keep, _partial_suffix(vm.pending, vm.end_marker),
                               _partial_suffix(vm.pending, vm.main_marker))
                out = bytes(vm.pending[: len(vm.pending) - keep])
                del vm.pending[: len(out)]
                self._relay(out)
                return
            # ENDING: the raw REPL closes the boot code's output with "\x04", its (empty)
            # error text, "\x04", then prompts ">".
            match = re.match(rb"\x04(.*?)\x04>", bytes(vm.pending), re.S)
            if match is None:
                return
            if match.group(1):
                self._relay(match.group(1))
            del vm.pending[: match.end()]
            vm.enter(Phase.RUNNING)
            if vm.raw_wanted:
                self._to_console(RAW_REPL_PROMPT)
            else:
                self._write_vm(b"\x02")
            self._release_held_input()

    def _relay(self, data: bytes) -> None:
        if not data:
            return
        self._track_repl_mode(data)
        if not self.raw_active:  # the raw REPL's tracebacks are its client's business
            for text in self.console_errors.feed(data):
                log.warning("board console: %s", text)
                self.on_event({"event": "console-error", "text": text})
        self._to_console(data)

    def _track_repl_mode(self, data: bytes) -> None:
        """Remember whether the raw or the friendly REPL was entered last."""
        window = self._mode_tail + data
        raw_at = window.rfind(RAW_REPL_BANNER)
        friendly_at = window.rfind(FRIENDLY_BANNER_TAIL)
        if raw_at >= 0 or friendly_at >= 0:
            self.raw_active = raw_at > friendly_at
        self._mode_tail = window[-len(FRIENDLY_BANNER_TAIL) :]

    def _to_console(self, data: bytes) -> None:
        """Write to every console. A reader that is slow holds the VM back (flow control,
        as USB does); output that no one takes for STALL_DROP_S is dropped, as on a USB
        port with no host, so a board nobody listens to keeps running."""
        for client in list(self.clients):
            try:
                client.sendall(data)
            except OSError:
                self._drop_client(client)
        if not self._backlog:
            try:
                written = os.write(self.console_fd, data)
            except BlockingIOError:
                written = 0
            if written == len(data):
                return
            data = data[written:]
            self._stalled_since = time.monotonic()
            self.selector.register(self._console_wfd, selectors.EVENT_WRITE, self._flush_console)
        self._backlog += data
        if len(self._backlog) > BACKLOG_LIMIT and self.vm is not None and self._reading_vm:
            self.selector.unregister(self.vm.fd)
            self._reading_vm = False

    def _flush_console(self, _fd: int) -> None:
        try:
            written = os.write(self.console_fd, self._backlog)
        except BlockingIOError:
            written = 0
        if written:
            del self._backlog[:written]
            self._stalled_since = time.monotonic()
        if not self._backlog:
            self.selector.unregister(self._console_wfd)
        self._resume_vm_output()

    def _drop_stalled_output(self) -> None:
        if self._backlog and time.monotonic() - self._stalled_since > STALL_DROP_S:
            log.info("nobody reads the serial port: %d bytes dropped", len(self._backlog))
            self._backlog.clear()
            self.selector.unregister(self._console_wfd)
            self._resume_vm_output()

    def _resume_vm_output(self) -> None:
        if len(self._backlog) <= BACKLOG_LIMIT and self.vm is not None and not self._reading_vm:
            self.selector.register(self.vm.fd, selectors.EVENT_READ, self._from_vm)
            self._reading_vm = True

    # ---- console input --------------------------------------------------------------------

    def _from_console(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, OSError):
            return
        if data:
            self._console_input(data)

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except BlockingIOError:
            return
        client.setblocking(True)
        client.settimeout(2.0)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _ack_at_once(client)
        self.clients.append(client)
        self.selector.register(client, selectors.EVENT_READ, self._from_client)

    def _from_client(self, client: socket.socket) -> None:
        try:
            data = client.recv(READ_SIZE)
            _ack_at_once(client)
        except OSError:
            data = b""
        if not data:
            self._drop_client(client)
            return
        self._console_input(data)

    def _drop_client(self, client: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client)
        if client in self.clients:
            self.clients.remove(client)
        client.close()

    def _console_input(self, data: bytes) -> None:
        if self._holding or self.vm is None or self.vm.phase is not Phase.RUNNING:
            self._held += data  # the VM is booting, or switching REPL modes
            return
        self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        """Pass console bytes to the VM, turning 0x03 into SIGINT where a board would."""
        vm = self.vm
        assert vm is not None
        at_boundary = self._last_input in (None, 0) or (
            time.monotonic() - self._last_input_at > LINE_IDLE_S)
        start = 0
        while True:
            at = data.find(b"\x03", start)
            if at < 0:
                self._write_vm(data[start:])
                self._note_input(data)
                return
            self._write_vm(data[start:at])
            if interrupt(vm.process.pid):
                self._sigint_at = time.monotonic()
                start = at + 1
                if vm.main_done:
                    continue
                # main.py is unwinding: what follows is for the REPL it falls back to.
                self._hold_input(INTERRUPT_HOLD_S)
                self._held += data[start:]
                self._note_input(data[:start])
                return
            self._write_vm(data[at : at + 1])
            start = at + 1
            if at == 1 and data[:2] in INTERRUPT_REQUESTS and at_boundary:
                # mpremote's interrupt reached a program that reads 0x03 as data: let it
                # act before mpremote's next bytes (often in the same read) arrive. Only
                # at a frame boundary: a pause inside a frame would split it.
                self._hold_input(INTERRUPT_HOLD_S)
                self._held += data[start:]
                self._note_input(data[:start])
                return

    def _note_input(self, data: bytes) -> None:
        if data:
            self._last_input = data[-1]
            self._last_input_at = time.monotonic()

    def _hold_input(self, seconds: float | None = None) -> None:
        self._holding = True
        self._hold_until = time.monotonic() + seconds if seconds else 0.0

    def _release_held_input_if_due(self) -> None:
        if self._holding and self._hold_until and time.monotonic() >= self._hold_until:
            self._release_held_input()

    def _release_held_input(self) -> None:
        self._holding = False
        self._hold_until = 0.0
        held, self._held = bytes(self._held), bytearray()
        if held and self.vm is not None:
            self._deliver(held)


def _partial_suffix(buffer: bytearray, marker: bytes) -> int:
    """Length of the longest proper prefix of `marker` that `buffer` ends with."""
    first = marker[:1]
    start = max(0, len(buffer) - len(marker) + 1)
    at = buffer.find(first, start)
    while at >= 0:
        if marker.startswith(buffer[at:]):
            return len(buffer) - at
        at = buffer.find(first, at + 1)
    return 0


def _json_events(event: dict) -> None:
    with contextlib.suppress(BrokenPipeError):  # the parent is gone: stdin EOF stops us
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def _watch_parent(supervisor: Supervisor) -> None:
    """With --events the parent holds our stdin: its end means the parent is gone."""

    def on_stdin(fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            supervisor.selector.unregister(fd)
            supervisor.request("stop")

    supervisor.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, on_stdin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m microswarm.vboard.supervisor")
    parser.add_argument("--flash", type=Path, required=True)
    parser.add_argument("--micropython", required=True)
    parser.add_argument("--heap", type=int, default=None)
    parser.add_argument("--tcp-port", type=int, default=None)
    parser.add_argument("--link", type=Path, default=None)
    parser.add_argument("--events", action="store_true", help="JSON events on stdout")
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--board", default=None,
                        help="board definition: a WIZnet board gets its chip on the SPI bus")
    args = parser.parse_args(argv)
    logging.basicConfig(
        filename=args.log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    on_event = _json_events if args.events else None
    try:
        supervisor = Supervisor(
            flash=args.flash,
            micropython=args.micropython,
            heap_bytes=args.heap,
            tcp_port=args.tcp_port,
            link_path=args.link,
            on_event=on_event,
            board_def=_board_def(args.board),
        )
    except (SupervisorError, NicError, OSError) as exc:
        log.error("%s", exc)
        if on_event is not None:
            on_event({"event": "error", "text": str(exc)})
        print(f"virtual board: {exc}", file=sys.stderr)
        return 1
    install_signal_handlers(supervisor)
    if args.events:
        _watch_parent(supervisor)
    supervisor.serve()
    return 0


def _board_def(name: str | None) -> dict | None:
    if name is None:
        return None
    from microswarm import paths

    return paths.load_board(name)


def install_signal_handlers(supervisor: Supervisor) -> None:
    signal.signal(signal.SIGTERM, lambda *_: supervisor.request("stop"))
    signal.signal(signal.SIGINT, lambda *_: supervisor.request("stop"))
    signal.signal(signal.SIGUSR1, lambda *_: supervisor.request("hard-reset"))
    signal.signal(signal.SIGHUP, lambda *_: supervisor.request("stop"))


if __name__ == "__main__":
    sys.exit(main())
