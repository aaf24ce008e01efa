"""Copy only what changed: compare sha256 of the board's files with the bundle's.

The board hashes its own files (a few lines run with `mpremote exec`), so nothing but
hashes and names crosses the link before the copy, and the copy is checked the same way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from microswarm.deploy.build import sha256_hex
from microswarm.deploy.mpremote import Mpremote

MISSING = "-"

# Runs on the board. Reads in small blocks: a board's heap is small. The first line says
# which .mpy version and native arch the board's MicroPython runs.
_HASH_CODE = """\
import hashlib, binascii, sys
print(':mpy', getattr(sys.implementation, '_mpy', 0))
try:
    import machine
    print(':uid', binascii.hexlify(machine.unique_id()).decode())
except Exception:
    pass
def _msw_sha(n):
    try:
        f = open(n, 'rb')
    except OSError:
        return '-'
    h = hashlib.sha256()
    while True:
        b = f.read(512)
        if not b:
            break
        h.update(b)
    f.close()
    return binascii.hexlify(h.digest()).decode()
for _n in {names!r}:
    print(_n, _msw_sha(_n))
del _msw_sha
"""


class DeployError(RuntimeError):
    """The board's files do not match what was copied, or it could not be read."""


@dataclass
class Plan:
    """What a deploy does to a board's flash."""

    copy: dict[str, str] = field(default_factory=dict)  # name -> "new" | "changed"
    remove: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.copy and not self.remove


def remote_hashes(mp: Mpremote, names: Iterable[str]) -> dict[str, str]:
    """sha256 (hex) of each named file on the board; MISSING for files it lacks."""
    return probe(mp, names).hashes


@dataclass
class Probe:
    """What one exec on the board tells: `sys.implementation._mpy` (0 where it has none),
    `machine.unique_id()` (b"" where the port has none) and the sha256 (hex) of each named
    file (MISSING for files it lacks)."""

    mpy: int
    uid: bytes
    hashes: dict[str, str]


def probe(mp: Mpremote, names: Iterable[str]) -> Probe:
    """Ask the board, in one exec, what `Probe` holds."""
    wanted = sorted(set(names))
    for name in wanted:
        if not name or "/" in name or "'" in name or "\\" in name:
            raise ValueError(f"unexpected file name {name!r}")
    output = mp.exec(_HASH_CODE.format(names=wanted))
    found: dict[str, str] = {}
    mpy, uid = 0, b""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in wanted:
            found[parts[0]] = parts[1]
        elif len(parts) == 2 and parts[0] == ":mpy" and parts[1].isdigit():
            mpy = int(parts[1])
        elif len(parts) == 2 and parts[0] == ":uid":
            uid = bytes.fromhex(parts[1])
    missing = [n for n in wanted if n not in found]
    if missing:
        raise DeployError(f"the board did not report {', '.join(missing)}: {output[-300:]!r}")
    return Probe(mpy, uid, found)


def make_plan(files: Mapping[str, bytes], remote: Mapping[str, str],
              shadowed: Iterable[str]) -> Plan:
    plan = Plan()
    for name, data in sorted(files.items()):
        have = remote.get(name, MISSING)
        if have == MISSING:
            plan.copy[name] = "new"
        elif have != sha256_hex(data):
            plan.copy[name] = "changed"
        else:
            plan.unchanged.append(name)
    plan.remove = sorted(n for n in shadowed if remote.get(n, MISSING) != MISSING)
    return plan


def apply_plan(mp: Mpremote, files: Mapping[str, bytes], plan: Plan) -> None:
    """Copy and remove in one mpremote session. Files are staged in a private folder
    (config.json holds the cluster key) that is removed afterwards."""
    if plan.empty:
        return
    with tempfile.TemporaryDirectory(prefix="msw-deploy-") as tmp:
        os.chmod(tmp, 0o700)
        staged = []
        for name in plan.copy:
            path = Path(tmp) / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(files[name])
            staged.append(str(path))
        commands: list[list[str]] = []
        if staged:
            commands.append(["fs", "cp", *staged, ":"])
        for name in plan.remove:
            commands.append(["fs", "rm", ":" + name])
        mp.run_chain(commands, timeout=max(mp.timeout, 10 + len(staged) * 5))


def verify(mp: Mpremote, files: Mapping[str, bytes], names: Iterable[str]) -> None:
    names = list(names)
    if not names:
        return
    remote = remote_hashes(mp, names)
    bad = [n for n in names if remote[n] != sha256_hex(files[n])]
    if bad:
        raise DeployError(f"after the copy the board's {', '.join(bad)} differ from the bundle")
