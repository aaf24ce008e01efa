"""The modules in a ROM partition (`microswarm deploy --romfs`): their .mpy files go into one
ROMFS image, which the firmware mounts at /rom and imports in place (bytecode in flash, not
copied into the heap), written with `mpremote romfs deploy` through `vfs.rom_ioctl`'s
erase and write commands. The board's firmware needs a ROM partition: ROMFS support
(MICROPY_VFS_ROM) is not enough.

    rest = romfs_image(files, Path("modules.img"))   # the files left for the file system
    part = probe_partition(mp, image)                # what partition 0 holds
    write_partition(mp, image)                       # then read back
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from microswarm.deploy.mpremote import Mpremote, mpremote_command
from microswarm.deploy.sync import DeployError

PARTITION = 0  # the ROM partition deploy writes (mp_init mounts the first at /rom)

NEEDS = ("a MicroPython firmware with a ROM partition: ESP32, a build whose partition table "
         "has a 'romfs' partition (stock ESP32_GENERIC has none); RP2350, a build with "
         "MICROPY_HW_ROMFS_BYTES set. Without --romfs the modules go on the file system")


class RomfsError(DeployError):
    """The board cannot hold the image, or the partition does not hold it after the write."""


def romfs_image(files: dict[str, bytes], target: Path) -> dict[str, bytes]:
    """Write the ROMFS image of the .mpy modules in `files` (as they are: `mpremote romfs
    build --no-mpy`) to `target`; returns the files left for the flash file system."""
    with tempfile.TemporaryDirectory(prefix="msw-romfs-") as tmp:
        for name, data in files.items():
            if name.endswith(".mpy"):
                path = Path(tmp) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        proc = subprocess.run(
            [mpremote_command(), "romfs", "--no-mpy", "--output", str(target), "build", tmp],
            capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not target.is_file():
        raise RuntimeError(f"mpremote romfs build failed:\n{proc.stdout[-1000:]}"
                           f"{proc.stderr[-1000:]}")
    return {name: data for name, data in files.items() if not name.endswith(".mpy")}


# Runs on the board: whether it has a ROM partition, its size and erase block, and the
# sha256 of its first {length} bytes (what an image of that length would occupy). A
# partition is a memoryview (ports whose ioctl erases and writes) or a block device
# (ports whose partition object has readblocks), as mpremote's romfs commands take them.
_PROBE_CODE = """\
import vfs, hashlib, binascii
def _msw_rom(n):
    io = getattr(vfs, 'rom_ioctl', None)
    if io is None:
        print(':rom missing')
        return
    count = io(1)
    dev = io(2, {partition}) if count > {partition} else -1
    if isinstance(dev, int):
        print(':rom none', count)
        return
    h = hashlib.sha256()
    if hasattr(dev, 'ioctl'):
        block = dev.ioctl(5, 0)
        size = dev.ioctl(4, 0) * block
        buf = bytearray(block)
        at = 0
        while at < min(n, size):
            dev.readblocks(at // block, buf)
            h.update(buf[:min(block, n - at)])
            at += block
    else:
        size = len(dev)
        block = io(6, {partition})
        m = memoryview(dev)
        at = 0
        while at < min(n, size):
            h.update(m[at:min(n, size, at + 512)])
            at += 512
    print(':rom', count, size, block, binascii.hexlify(h.digest()).decode())
_msw_rom({length})
del _msw_rom
"""


@dataclass
class Partition:
    """What the board reports of its ROM partition: `state` is "missing" (no
    vfs.rom_ioctl), "none" (ROMFS support, no partition) or "ok"; `held` is the sha256
    (hex) of its first len(image) bytes."""

    state: str
    size: int = 0
    block: int = 0
    held: str = ""

    def refusal(self, image_bytes: int) -> str | None:
        """Why the image cannot go on this board, or None."""
        if self.state == "missing":
            return ("the board's firmware has no ROMFS support (no vfs.rom_ioctl): --romfs "
                    f"needs {NEEDS}")
        if self.state == "none":
            return ("the board's firmware reports no ROM partition (vfs.rom_ioctl(1) is "
                    f"0): --romfs needs {NEEDS}")
        if image_bytes > self.size:
            return (f"the ROMFS image ({image_bytes} bytes) does not fit the board's "
                    f"{self.size}-byte ROM partition")
        return None


def probe_partition(mp: Mpremote, image: bytes) -> Partition:
    output = mp.exec(_PROBE_CODE.format(partition=PARTITION, length=len(image)))
    for line in output.splitlines():
        parts = line.split()
        if parts[:1] != [":rom"]:
            continue
        if parts[1:2] == ["missing"]:
            return Partition("missing")
        if parts[1:2] == ["none"]:
            return Partition("none")
        if len(parts) == 5:
            size, block = int(parts[2]), int(parts[3])
            return Partition("ok", size=size, block=block, held=parts[4])
    raise RomfsError(f"the board did not report its ROM partition: {output[-300:]!r}")


def holds(part: Partition, image: bytes) -> bool:
    return part.state == "ok" and part.held == hashlib.sha256(image).hexdigest()


def write_partition(mp: Mpremote, image: bytes) -> None:
    """`mpremote romfs deploy` of the image, then the partition read back: mpremote does
    not check what the ioctl's writes return, so the read-back is the check."""
    with tempfile.TemporaryDirectory(prefix="msw-romfs-") as tmp:
        path = Path(tmp) / "modules.img"  # (romfs deploy takes a file named .img as is)
        path.write_bytes(image)
        mp.run_chain([["romfs", "--partition", str(PARTITION), "deploy", str(path)]],
                     timeout=max(mp.timeout, 30 + len(image) / 1024))
    after = probe_partition(mp, image)
    if not holds(after, image):
        raise RomfsError("after `mpremote romfs deploy` the board's ROM partition does not "
                         "hold the image: its firmware's vfs.rom_ioctl does not write "
                         f"(erase and write commands); --romfs needs {NEEDS}")
