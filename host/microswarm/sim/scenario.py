"""Scenario files: a simulated cluster, its links, its faults and its job, as TOML.

See docs/sim.md for the format. `load(path)` parses and checks a file and returns a
`Scenario`; every mistake raises `ScenarioError` naming the table and key at fault.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microswarm.sim.links import PRESETS
from microswarm.sim.speed import BOARD_FACTOR

FAULT_KINDS = ("crash", "freeze", "straggler", "partition", "disconnect", "restart_master")
JOB_KINDS = ("mandelbrot", "matmul", "synthetic", "kernel")


class ScenarioError(ValueError):
    """A scenario file that cannot be run as written."""


@dataclass(frozen=True)
class NodeGroup:
    count: int
    prefix: str
    board: str
    board_factor: float
    link: str
    loss: float = 0.0
    corrupt: float = 0.0
    latency_ms: float | None = None
    jitter_ms: float = 0.0
    slots: int = 2
    slowdown: float = 1.0


@dataclass(frozen=True)
class VmGroup:
    """Real MicroPython VM boards (the real firmware) that join the simulated master;
    their presence makes the run real-time."""

    count: int
    prefix: str
    board: str = "unix"


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: tuple[float, float]  # a window; a fault without one happens at its start
    nodes: tuple[str, ...] = ()
    fraction: float = 0.0
    count: int = 0
    duration_s: float | None = None  # freeze / partition / disconnect heal after this
    factor: float = 1.0  # straggler slowdown
    restart_after_s: float | None = None  # crash: the node boots again and rejoins


@dataclass(frozen=True)
class MasterConfig:
    heartbeat_ms: int = 1000
    window: int = 2
    retries: int = 5
    recover_lost: bool = True  # requeue tasks a HEARTBEAT shows the node never got
    journal: bool = False  # keep the SQLite journal (on by default with restart_master)
    options: dict[str, Any] = field(default_factory=dict)  # passed to the scheduler


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    duration_s: float
    master: MasterConfig
    groups: tuple[NodeGroup, ...]
    job: dict[str, Any]
    faults: tuple[Fault, ...]
    source: str = ""
    vms: tuple[VmGroup, ...] = ()

    @property
    def node_count(self) -> int:
        return sum(g.count for g in self.groups)


def shipped_dir() -> Path:
    """scenarios/ of the repository (the scenarios are data, not part of the wheel)."""
    from microswarm import paths

    return paths.firmware_dir().parent / "scenarios"


def resolve(name: str | Path) -> Path:
    """A scenario file path, or the name of a shipped scenario (`crash-10pct`)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_dir() / f"{Path(name).stem}.toml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in shipped_dir().glob("*.toml")))
    raise ScenarioError(f"no scenario file {name} (shipped scenarios: {known or 'none'})")


def load(path: str | Path) -> Scenario:
    path = resolve(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return parse(data, source=str(path))


def parse(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    top = _Table(data, source)
    name = top.get("name", str, default=Path(source).stem)
    description = top.get("description", str, default="")
    seed = top.get("seed", int, default=1)
    duration = top.get("duration_s", (int, float), default=3600.0)
    master = _master(top.sub("master", required=False), source)
    groups = tuple(_group(t, i, source) for i, t in enumerate(top.array("nodes")))
    if not groups:
        raise ScenarioError(f"{source}: at least one [[nodes]] group is required")
    vms = tuple(_vms(t, i, source) for i, t in enumerate(top.array("vms")))
    prefixes = [g.prefix for g in groups] + [v.prefix for v in vms]
    if len(set(prefixes)) != len(prefixes):
        raise ScenarioError(f"{source}: [[nodes]] groups need distinct prefixes: {prefixes}")
    job = top.sub("job", required=True).data
    if job.get("kind") not in JOB_KINDS:
        raise ScenarioError(f"{source}: [job] kind must be one of {', '.join(JOB_KINDS)}")
    faults = tuple(_fault(t, i, source) for i, t in enumerate(top.array("faults")))
    top.done()
    if master.journal is None:
        restarts = any(f.kind == "restart_master" for f in faults)
        master = dataclasses.replace(master, journal=restarts)
    for fault in faults:
        named_vms = [n for n in fault.nodes if any(n.startswith(v.prefix) for v in vms)]
        if named_vms:
            raise ScenarioError(f"{source}: faults apply to simulated nodes, not VM boards "
                                f"{named_vms}")
    return Scenario(name, description, seed, float(duration), master, groups, dict(job),
                    faults, source, vms)


def _vms(t: _Table, index: int, source: str) -> VmGroup:
    from microswarm import paths

    group = VmGroup(
        count=t.get("count", int, default=1),
        prefix=t.get("prefix", str, default=f"vm{index}-"),
        board=t.get("board", str, default="unix"),
    )
    t.done()
    if group.count < 1:
        raise ScenarioError(f"{source}: [[vms]] #{index + 1}: count must be >= 1")
    if group.board not in paths.board_names():
        raise ScenarioError(f"{source}: [[vms]] #{index + 1}: unknown board {group.board!r} "
                            f"(boards/: {', '.join(paths.board_names())})")
    return group


def _master(t: _Table | None, source: str) -> MasterConfig:
    if t is None:
        return MasterConfig(journal=None)  # type: ignore[arg-type]  # decided by parse()
    cfg = MasterConfig(
        heartbeat_ms=t.get("heartbeat_ms", int, default=1000),
        window=t.get("window", int, default=2),
        retries=t.get("retries", int, default=5),
        recover_lost=t.get("recover_lost", bool, default=True),
        journal=t.get("journal", bool, default=None),
        options=dict(t.get("scheduler", dict, default={})),
    )
    t.done()
    if cfg.heartbeat_ms <= 0 or cfg.window <= 0 or cfg.retries < 0:
        raise ScenarioError(f"{source}: [master] heartbeat_ms and window must be > 0")
    return cfg


def _group(t: _Table, index: int, source: str) -> NodeGroup:
    where = f"{source}: [[nodes]] #{index + 1}"
    board = t.get("board", str, default="rp2350")
    factor = t.get("board_factor", (int, float), default=BOARD_FACTOR.get(board))
    if factor is None:
        known = ", ".join(sorted(BOARD_FACTOR))
        raise ScenarioError(f"{where}: unknown board {board!r} (known: {known}); "
                            "or give board_factor")
    link = t.get("link", str, default="uart115200")
    if link not in PRESETS:
        raise ScenarioError(f"{where}: unknown link {link!r} (known: {', '.join(PRESETS)})")
    group = NodeGroup(
        count=t.get("count", int, default=1),
        prefix=t.get("prefix", str, default=f"g{index}-"),
        board=board,
        board_factor=float(factor),
        link=link,
        loss=t.get("loss", (int, float), default=0.0),
        corrupt=t.get("corrupt", (int, float), default=0.0),
        latency_ms=t.get("latency_ms", (int, float), default=None),
        jitter_ms=t.get("jitter_ms", (int, float), default=0.0),
        slots=t.get("slots", int, default=2),
        slowdown=t.get("slowdown", (int, float), default=1.0),
    )
    t.done()
    if group.count < 1 or group.slots < 1:
        raise ScenarioError(f"{where}: count and slots must be >= 1")
    if not (0 <= group.loss < 1 and 0 <= group.corrupt < 1):
        raise ScenarioError(f"{where}: loss and corrupt are probabilities in [0, 1)")
    if group.corrupt and not PRESETS[link].serial:
        raise ScenarioError(f"{where}: corrupt applies to serial links, not {link}")
    return group


def _fault(t: _Table, index: int, source: str) -> Fault:
    where = f"{source}: [[faults]] #{index + 1}"
    kind = t.get("kind", str)
    if kind not in FAULT_KINDS:
        raise ScenarioError(f"{where}: kind must be one of {', '.join(FAULT_KINDS)}")
    at = t.get("at_s", (int, float, list))
    if isinstance(at, list):
        if len(at) != 2 or not all(isinstance(v, int | float) for v in at) or at[0] > at[1]:
            raise ScenarioError(f"{where}: at_s is a time or a window [earliest, latest]")
        window = (float(at[0]), float(at[1]))
    else:
        window = (float(at), float(at))
    fault = Fault(
        kind=kind,
        at_s=window,
        nodes=tuple(t.get("nodes", list, default=[])),
        fraction=t.get("fraction", (int, float), default=0.0),
        count=t.get("count", int, default=0),
        duration_s=t.get("duration_s", (int, float), default=None),
        factor=t.get("factor", (int, float), default=1.0),
        restart_after_s=t.get("restart_after_s", (int, float), default=None),
    )
    t.done()
    targets = bool(fault.nodes) + bool(fault.fraction) + bool(fault.count)
    if kind == "restart_master":
        if targets:
            raise ScenarioError(f"{where}: restart_master takes no nodes")
    elif targets != 1:
        raise ScenarioError(f"{where}: name the nodes with exactly one of nodes, fraction, "
                            "count")
    if kind == "straggler" and fault.factor < 1:
        raise ScenarioError(f"{where}: a straggler's factor is a slowdown >= 1")
    return fault


class _Table:
    """A TOML table read key by key; `done()` rejects keys nobody asked for (typos)."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{where}: expected a table")
        self.data = data
        self.where = where
        self.seen: set[str] = set()

    _REQUIRED = object()

    def get(self, key: str, kinds: Any, default: Any = _REQUIRED) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is _Table._REQUIRED:
                raise ScenarioError(f"{self.where}: missing key {key!r}")
            return default
        value = self.data[key]
        if (isinstance(value, bool) and kinds is not bool) or not isinstance(value, kinds):
            raise ScenarioError(f"{self.where}: {key!r} has the wrong type ({value!r})")
        return value

    def sub(self, key: str, required: bool) -> _Table | None:
        self.seen.add(key)
        if key not in self.data:
            if required:
                raise ScenarioError(f"{self.where}: missing table [{key}]")
            return None
        return _Table(self.data[key], f"{self.where}: [{key}]")

    def array(self, key: str) -> list[_Table]:
        self.seen.add(key)
        items = self.data.get(key, [])
        if not isinstance(items, list):
            raise ScenarioError(f"{self.where}: {key} must be an array of tables [[{key}]]")
        return [_Table(item, self.where) for item in items]

    def done(self) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            raise ScenarioError(f"{self.where}: unknown keys {extra}")
