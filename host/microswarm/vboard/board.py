"""VirtualBoard: one virtual board (the supervisor process and its MicroPython VM) driven
from Python, for tests, `microswarm up` and the demo.

    with VirtualBoard(link="serial", key=key) as vb:
        port = vb.serial_port          # open it with pyserial, mpremote or the master

The supervisor runs as a child process (`python -m microswarm.vboard.supervisor`), so a
board survives a blocked or crashed caller thread, and ends when its owner's process ends
(it watches the pipe on its stdin).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from microswarm import bundle, paths
from microswarm.keys import DEFAULT_CLUSTER

log = logging.getLogger("microswarm.vboard")

READY_TIMEOUT_S = 15.0


class VirtualBoardError(RuntimeError):
    """The virtual board could not be started or did not answer in time."""


def install_layout(flash: Path, board: str, config: str, *, compiled: bool = True,
                   native: bool = True, kernels: Sequence[str | os.PathLike] = ()
                   ) -> dict[str, bytes]:
    """Lay a virtual board's flash out as `microswarm deploy` would for a board running
    the VM's arch: the bundle, modules compiled to .mpy (or sources with compiled=False),
    the x64 native module (where the board's arch is one the project builds: not an
    ESP32's), kernel packages, and nothing left over that would shadow them."""
    from microswarm.deploy.build import build, shadowed_names

    native = native and bundle.vm_arch(paths.load_board(board)) is not None
    files = build(board, config, compiled=compiled, native=native, arch=bundle.VM_ARCH,
                  kernels=kernels)
    stale = shadowed_names(files)
    if bundle.NATIVE_MODULE not in files:
        stale.add(bundle.NATIVE_MODULE)
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            (flash / name).unlink()
    bundle.write_layout(flash, files)
    return files


class VirtualBoard:
    """A MicroPython unix-port VM that plays a board, with its flash in a folder.

    `firmware=False` gives a blank board: the flash folder is left as it is (empty when
    new), for deploy tests. `workdir` keeps the flash (and the `serial` symlink, the
    supervisor's log) in a folder of the caller's; by default a temporary folder is made
    and removed at stop().
    """

    def __init__(
        self,
        board: str = "unix",
        link: str = "tcp",
        node_id: str = "vb1",
        cluster: str = DEFAULT_CLUSTER,
        key: bytes = b"",
        master: str = "",
        workdir: str | os.PathLike | None = None,
        native: bool = True,
        *,
        firmware: bool = True,
        slots: int | None = None,
        heap_bytes: int | None = None,
        console_tcp_port: int | None = None,
        compiled: bool = True,
        kernels: list[str | os.PathLike] | tuple = (),
    ) -> None:
        self.board = board
        self.board_def = paths.load_board(board)
        self.link = link
        self.node_id = node_id
        self.cluster = cluster
        self.key = bytes(key)
        self.master = master
        self.native = native
        self.firmware = firmware
        self.compiled = compiled
        self.slots = slots
        self.heap_bytes = heap_bytes or self.board_def.get("heap_bytes")
        self.console_tcp_port = console_tcp_port
        self.kernels = list(kernels)  # kernel package folders installed with the firmware
        self._own_workdir = workdir is None
        self._workdir_arg = workdir
        self.workdir: Path | None = None
        self.serial_port: str | None = None
        self.console_port: int | None = None
        self.supervisor_pid: int | None = None
        self.vm_pid: int | None = None
        self._process: subprocess.Popen | None = None
        self._events: queue.Queue[dict] = queue.Queue()
        self._boots = 0
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.console_errors: list[str] = []

    # ---- paths -------------------------------------------------------------------------

    @property
    def flash(self) -> Path:
        if self.workdir is None:
            raise VirtualBoardError("the board is not started")
        return self.workdir / "flash"

    @property
    def serial_link(self) -> Path:
        """A symlink to the serial port with a name that only depends on the flash folder
        (`<workdir>/flash.serial`)."""
        from microswarm.vboard.supervisor import link_path_for

        return link_path_for(self.flash)

    @property
    def last_error(self) -> str | None:
        """The last error the board printed on its console (a worker's log line, or the
        exception that ended a program), or None."""
        with self._lock:
            return self.console_errors[-1] if self.console_errors else None

    @property
    def log_path(self) -> Path:
        return self.flash.parent / "supervisor.log"

    @property
    def boots(self) -> int:
        """How many times the VM has been started (power-on, resets, crashes)."""
        with self._lock:
            return self._boots

    # ---- life cycle --------------------------------------------------------------------

    def start(self) -> VirtualBoard:
        if self._process is not None:
            raise VirtualBoardError("the board is already started")
        if self._workdir_arg is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"msw-{self.node_id}-"))
        else:
            self.workdir = Path(self._workdir_arg).resolve()
        self.flash.mkdir(parents=True, exist_ok=True)
        if self.firmware:
            self.install_firmware()
        command = [
            sys.executable, "-m", "microswarm.vboard.supervisor",
            "--flash", str(self.flash),
            "--micropython", paths.micropython_command(),
            "--link", str(self.serial_link),
            "--log", str(self.log_path),
            "--board", self.board,
            "--events",
        ]
        if self.heap_bytes:
            command += ["--heap", str(int(self.heap_bytes))]
        if self.console_tcp_port is not None:
            command += ["--tcp-port", str(self.console_tcp_port)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None
        )
        self._reader = threading.Thread(
            target=self._read_events, name=f"vboard-{self.node_id}", daemon=True
        )
        self._reader.start()
        ready = self._wait_event("ready", READY_TIMEOUT_S)
        self.serial_port = ready["serial"]
        self.console_port = ready.get("tcp_port")
        self.supervisor_pid = ready["pid"]
        self._wait_event("vm", READY_TIMEOUT_S)
        return self

    def install_firmware(self) -> None:
        """Lay the flash folder out from the bundle (what `microswarm deploy` copies), with
        the native module of the VM's arch: the board's own arch cannot load here."""
        if len(self.key) < 16:
            raise VirtualBoardError("a virtual board with firmware needs a key of 16+ bytes")
        config = bundle.render_config(
            self.node_id, self.cluster, self.key, self.master, self.link, slots=self.slots
        )
        install_layout(self.flash, self.board, config, compiled=self.compiled,
                       native=self.native, kernels=self.kernels)

    def hard_reset(self) -> None:
        """Press the reset button: a fresh VM that runs boot.py and main.py."""
        self._signal_supervisor(signal.SIGUSR1)

    def stop(self, timeout: float = 10.0) -> None:
        """Switch the board off in order: the supervisor ends the VM and closes the port."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
        self._finish()

    def kill(self) -> None:
        """Cut the power: SIGKILL the VM and its supervisor (crash tests). The VM's sockets
        close as a crashed host's would; the serial port disappears."""
        process, self._process = self._process, None
        if self.vm_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.vm_pid, signal.SIGKILL)
        if process is not None:
            process.kill()
            process.wait(timeout=10)
        self._finish()

    def crash(self) -> None:
        """SIGKILL only the VM: the supervisor restarts it as after a watchdog reset."""
        if self.vm_pid is None:
            raise VirtualBoardError("no VM is running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.vm_pid, signal.SIGKILL)

    def wait_boots(self, count: int, timeout: float = 15.0) -> None:
        """Wait until the VM has been started `count` times in all."""
        deadline = time.monotonic() + timeout
        while self.boots < count:
            if time.monotonic() > deadline:
                raise VirtualBoardError(f"the VM started {self.boots} times, not {count}")
            time.sleep(0.01)

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            process.kill()

    # ---- internals ---------------------------------------------------------------------

    def _finish(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _signal_supervisor(self, signum: int) -> None:
        if self._process is None or self._process.poll() is not None:
            raise VirtualBoardError("the board is not running")
        self._process.send_signal(signum)

    def _read_events(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "vm":
                with self._lock:
                    self.vm_pid = event["pid"]
                    self._boots += 1
            elif event.get("event") == "console-error":
                with self._lock:
                    self.console_errors.append(event["text"])
                    del self.console_errors[:-20]
            self._events.put(event)
        self._events.put({"event": "exit"})

    def _wait_event(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self._events.get(timeout=max(0.0, remaining))
            except queue.Empty:
                event = None
            if event is not None and event["event"] == "error":
                self.kill()
                raise VirtualBoardError(event["text"])
            if event is None or event["event"] == "exit":
                detail = ""
                with contextlib.suppress(OSError):
                    detail = "\n" + self.log_path.read_text()[-2000:]
                self.kill()
                raise VirtualBoardError(f"the virtual board did not report {name!r}{detail}")
            if event["event"] == name:
                return event
