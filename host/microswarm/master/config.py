"""The cluster file (TOML): where the master listens and which nodes make the cluster.

    [cluster]
    name = "demo"
    key_file = "demo.key"        # relative to this file; or key = "text" for a throwaway
    kernels = ["mykernels"]      # kernel package folders (relative to this file): loaded
                                 # by the master's own nodes and every virtual board
    [master]
    host = "127.0.0.1"           # tcp_port, udp_port, control_port, journal,
    tcp_port = 5880              # heartbeat_ms, window, retries; ports 0-65535, 0: any
    udp_port = 5881              # free one; udp_port, control_port = false: none
    client = "127.0.0.1:5883"    # client port (Cluster.connect, run --master); false: none
    http = "127.0.0.1:5884"      # web dashboard and /metrics; false: none
    [serial]
    ports = ["/dev/ttyACM0"]     # boards on USB serial
    watch_usb = false            # also open new USB serial devices as they appear
    [boards]
    expected_tcp = 2             # physical boards that dial in over TCP
    [[virtual]]                  # MicroPython VM boards started by `microswarm up`
    count = 3
    board = "unix"
    link = "tcp"                 # or "serial" (a pty)
    native = true                # load the native kernel module
    [inproc]
    count = 2                    # in-process CPython nodes (share the master's process)
    [local]
    count = 2                    # CPython nodes in processes of their own (one core each)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microswarm.keys import DEFAULT_CLUSTER, MIN_KEY_BYTES, KeyFileError, read_key
from microswarm.master.client_proto import CLIENT_PORT
from microswarm.protocol.catalog import TCP_PORT, UDP_DISCOVERY_PORT

DASHBOARD_PORT = 5884


class ClusterFileError(ValueError):
    pass


@dataclass
class VirtualGroup:
    count: int
    board: str = "unix"
    link: str = "tcp"
    prefix: str = ""
    native: bool = True  # load the native kernel module when the board has one


@dataclass
class ClusterSpec:
    name: str = DEFAULT_CLUSTER
    key: bytes = b""
    host: str = "127.0.0.1"
    tcp_port: int = TCP_PORT
    udp_port: int | None = UDP_DISCOVERY_PORT
    control_port: int | None = 5882
    client: str | None = f"127.0.0.1:{CLIENT_PORT}"  # the client port (client_port.py)
    http: str | None = f"127.0.0.1:{DASHBOARD_PORT}"  # dashboard and /metrics (dashboard/)
    journal: str | None = None
    heartbeat_ms: int = 1000
    window: int = 4
    retries: int = 3
    serial_ports: list[str] = field(default_factory=list)
    watch_usb: bool = False
    expected_tcp: int = 0
    virtual: list[VirtualGroup] = field(default_factory=list)
    inproc: int = 0
    kernels: list[str] = field(default_factory=list)  # kernel package folders
    local: int = 0

    @property
    def expected_nodes(self) -> int:
        return (self.expected_tcp + len(self.serial_ports) + self.inproc + self.local
                + sum(g.count for g in self.virtual))

    def master_kwargs(self) -> dict[str, Any]:
        return dict(cluster=self.name, key=self.key, host=self.host, tcp_port=self.tcp_port,
                    udp_port=self.udp_port, control_port=self.control_port,
                    journal=self.journal, heartbeat_ms=self.heartbeat_ms, window=self.window,
                    retries=self.retries)


def _section(data: dict, name: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ClusterFileError(f"[{name}] must be a table")
    return value


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535


def _is_address(value: object) -> bool:
    if not isinstance(value, str):
        return False
    host, sep, port = value.rpartition(":")
    return bool(host and sep and port.isdigit() and int(port) <= 65535)


def load(path: str | Path) -> ClusterSpec:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ClusterFileError(f"cannot read cluster file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClusterFileError(f"{path}: {exc}") from None
    cluster, master = _section(data, "cluster"), _section(data, "master")
    spec = ClusterSpec(name=str(cluster.get("name", DEFAULT_CLUSTER)))
    if "key_file" in cluster:
        try:
            spec.key = read_key((path.parent / cluster["key_file"]).resolve())
        except KeyFileError as exc:
            raise ClusterFileError(f"{path}: [cluster] key_file: {exc}") from None
    elif "key" in cluster:
        spec.key = str(cluster["key"]).encode()
    if len(spec.key) < MIN_KEY_BYTES:
        raise ClusterFileError(f"{path}: the cluster key must be at least {MIN_KEY_BYTES} bytes "
                               "([cluster] key_file or key)")
    kernels = cluster.get("kernels", [])
    if not isinstance(kernels, list) or not all(isinstance(k, str) for k in kernels):
        raise ClusterFileError(f"{path}: [cluster] kernels must be a list of folder names")
    spec.kernels = [str((path.parent / k).resolve()) for k in kernels]
    for name in ("host", "heartbeat_ms", "window", "retries"):
        if name in master:
            setattr(spec, name, master[name])
    for name in ("tcp_port", "udp_port", "control_port"):
        if name in master:
            value = master[name]
            if value is False and name != "tcp_port":
                value = None
            elif not _is_port(value):
                raise ClusterFileError(f"{path}: [master] {name} = {value!r}: a port is a whole "
                                       "number from 0 (any free port) to 65535")
            setattr(spec, name, value)
    for name in ("client", "http"):
        if name in master:
            value = master[name]
            if value is not False and not _is_address(value):
                raise ClusterFileError(f"{path}: [master] {name} = {value!r}: must be "
                                       "\"HOST:PORT\" (PORT 0-65535) or false")
            setattr(spec, name, value or None)
    if "journal" in master:
        spec.journal = str((path.parent / master["journal"]).resolve())
    serial = _section(data, "serial")
    spec.serial_ports = list(serial.get("ports", []))
    spec.watch_usb = bool(serial.get("watch_usb", False))
    spec.expected_tcp = int(_section(data, "boards").get("expected_tcp", 0))
    for i, group in enumerate(data.get("virtual", [])):
        link = group.get("link", "tcp")
        if link not in ("tcp", "serial"):
            raise ClusterFileError(f"[[virtual]] #{i + 1}: link must be tcp or serial")
        spec.virtual.append(VirtualGroup(int(group.get("count", 1)), group.get("board", "unix"),
                                         link, group.get("prefix", f"vm{link[0]}"),
                                         bool(group.get("native", True))))
    spec.inproc = int(_section(data, "inproc").get("count", 0))
    spec.local = int(_section(data, "local").get("count", 0))
    if spec.local < 0 or spec.inproc < 0:
        raise ClusterFileError(f"{path}: [local] and [inproc] count must be >= 0")
    return spec
