"""What goes on a board's flash: the firmware modules, board.json, config.json, the native
module built for the board's architecture, and kernel packages (see kernelpkg.py) with
their manifests (the built-in kernels have one too: a deployed board holds .mpy files, so
it cannot hash its kernels' sources itself).

The vboard supervisor lays a virtual board's flash folder out from `layout()`, and
`microswarm deploy` copies the same files to a real board, so both run identical bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from microswarm import kernelpkg, paths
from microswarm.protocol.catalog import TCP_PORT

# Files in firmware/ that exist for the host only (the package marker that lets the host
# import the kernels as microswarm.firmware.kernels).
HOST_ONLY = frozenset({"__init__.py"})

NATIVE_MODULE = "msw_native.mpy"
LINKS = ("tcp", "serial")
VM_ARCH = "x64"  # the unix-port VM this package runs virtual boards on
# The arches tools/build_native.py can build (xtensawin, the ESP32's, needs a toolchain no
# registry ships). A test keeps the two lists equal.
NATIVE_ARCHES = ("x64", "armv6m", "armv7emsp", "rv32imc")


def vm_arch(board_def: Mapping) -> str | None:
    """The native arch a virtual board of this board runs: the VM's own, where the board has
    a native arch the project builds (an ESP32 runs the pure-Python kernels, so does its
    virtual board)."""
    return VM_ARCH if board_def.get("native_arch") in NATIVE_ARCHES else None


def arch_of_mpy(value: int) -> str | None:
    """The native arch a MicroPython reports in `sys.implementation._mpy` (bits 10 and up,
    the .mpy format's arch numbers; the firmware's msw_boot holds the table), or None."""
    from microswarm.firmware.msw_boot import MPY_ARCHES

    index = (int(value) >> 10) & 0x0F
    return MPY_ARCHES[index] if index < len(MPY_ARCHES) else None


def firmware_files() -> list[Path]:
    """The firmware modules a board needs, sorted by name."""
    return sorted(
        p for p in paths.firmware_dir().glob("*.py") if p.is_file() and p.name not in HOST_ONLY
    )


def native_module(arch: str | None) -> Path | None:
    """The built native module for `arch`, if `make native` produced one."""
    if not arch:
        return None
    path = paths.firmware_dir() / "native" / "build" / arch / NATIVE_MODULE
    return path if path.is_file() else None


def virtual_board(name: str) -> dict:
    """Board `name` as a bare MicroPython VM plays it (tests and benchmarks that run the
    worker without a supervisor): the same heap, frame limit and slots, the host's sockets
    in place of a WIZnet chip, and the VM's own native module (x64) where the board's arch
    is one the project builds (an ESP32's xtensawin is not). A virtual board (`microswarm
    vboard`) keeps the board's own network driver: its chip is a model on an SPI bus."""
    board = dict(paths.load_board(name))
    if board.get("net_driver") != "builtin":
        board["net_driver"] = "builtin"
        board["links"] = list(LINKS)
    if board.get("native_arch") not in (VM_ARCH, None):
        board["native_arch"] = vm_arch(board)
    return board


def render_config(
    node_id: str,
    cluster: str,
    key: bytes,
    master: str,
    link: str,
    *,
    discovery_port: int | None = None,
    slots: int | None = None,
) -> str:
    """config.json for one node. `master` is "host:port", or "" to find it by UDP discovery."""
    if not node_id or not isinstance(node_id, str):
        raise ValueError("node_id must be a non-empty string")
    if link not in LINKS:
        raise ValueError(f"link must be one of {', '.join(LINKS)}, not {link!r}")
    if len(key) < 16:
        raise ValueError("the cluster key must be at least 16 bytes")
    if master:
        host, sep, port = master.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"master must be 'host:port' or empty, not {master!r}")
    config: dict[str, object] = {
        "node_id": node_id,
        "cluster": cluster,
        "key": bytes(key).hex(),
        "master": master,
        "link": link,
    }
    if discovery_port is not None:
        config["discovery_port"] = int(discovery_port)
    if slots is not None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        config["slots"] = int(slots)
    return json.dumps(config, indent=1, sort_keys=True) + "\n"


def flash_uid(flash: Path) -> bytes:
    """A virtual board's `machine.unique_id()`: its flash folder is the board, so the id is
    the same at every start and differs between boards (as a chip's factory id does)."""
    return hashlib.sha256(str(Path(flash).resolve()).encode()).digest()[:8]


def default_node_id(board: str, uid: bytes) -> str:
    """A node's name when none is given: the board's name and the end of its unique id
    (`machine.unique_id()`), so two boards of one kind never take each other's name (the
    master would take the second for the first come back, and drop the first)."""
    return f"{board}-{uid.hex()[-6:]}"


def default_master(host: str = "127.0.0.1", port: int = TCP_PORT) -> str:
    return f"{host}:{port}"


def board_json(name: str) -> str:
    """The board definition as it is written to the board's flash (board.json)."""
    return json.dumps(paths.load_board(name), indent=1, sort_keys=True) + "\n"


def layout(board: str | Mapping, config: str | Mapping, arch: str | None = None,
           kernels: Iterable[str | Path] = ()) -> dict[str, bytes]:
    """The whole flash contents, by file name.

    `board` is a board name (boards/<name>.json) or an already loaded definition; `config`
    is the text from `render_config` or a dict with the same fields. `arch` is the native
    arch the target really runs, when it is known and differs from the board's (a virtual
    board runs the VM's arch, VM_ARCH; `deploy` asks the target): the native module of
    that arch goes in, never one the target cannot load. `kernels` are kernel package
    folders to add (their native modules for that same arch).
    """
    if isinstance(board, str):
        board_text = board_json(board)
        board_def = json.loads(board_text)
    else:
        board_def = dict(board)
        board_text = json.dumps(board_def, indent=1, sort_keys=True) + "\n"
    if isinstance(config, str):
        config_text = config
        json.loads(config_text)
    else:
        config_text = json.dumps(dict(config), indent=1, sort_keys=True) + "\n"
    files = {p.name: p.read_bytes() for p in firmware_files()}
    files["board.json"] = board_text.encode()
    files["config.json"] = config_text.encode()
    native = native_module(arch or board_def.get("native_arch"))
    if native is not None:
        files[NATIVE_MODULE] = native.read_bytes()
    name, manifest = kernelpkg.firmware_manifest()
    files[name] = manifest
    extra = kernelpkg.layout_files(kernels, arch or board_def.get("native_arch"))
    clash = sorted(set(extra) & set(files))
    if clash:
        raise kernelpkg.KernelPackageError(f"kernel package files {', '.join(clash)} would "
                                           "replace firmware files")
    files.update(extra)
    return files


def write_layout(target: Path, files: Mapping[str, bytes]) -> None:
    """Write a layout into a folder that plays a virtual board's flash."""
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)

