"""`microswarm deploy --romfs`: the modules in one ROMFS image in the board's ROM partition.

End to end on MicroPython's own 32-bit firmware (ports/qemu under qemu-system-arm, the
ESP32-like build with the ESP32 board's 111,168-byte heap, which the footprint and big-task
tests build too) whose ROM partition is written as NOR flash is
(tools/qemu_vfs_rom_ioctl.c), real mpremote on its UART's pty and a real master.

The port has no file system and exits at machine.reset(): the test mounts the RAM flash
of tools/qemu_flash.py at / (as the other QEMU tests do), deploys with mpremote `resume`
(a soft reset would unmount it) and no reset, and then does what the firmware's start-up
does at a reset (mp_init mounts the partition's image at /rom and appends /rom and
/rom/lib to sys.path) before it imports main.py. One boot: about 20 s.
A board without a ROM partition is refused: tests/deploy/test_deploy_romfs.py."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sys

import pytest

from microswarm import paths
from microswarm.deploy import deploy as deploy_module
from microswarm.deploy.deploy import DeployOptions, deploy, rom_image
from microswarm.deploy.mpremote import Mpremote
from support.qemu import firmware_tool

BOARD = "esp32-devkit-w5500"
KEY = bytes(range(104, 136))

# What mp_init (py/runtime.c) does at a reset when the partition holds a valid image
# (mp_vfs_mount_romfs_protected, extmod/vfs.c); main.py's worker is imported from there.
BOOT = ("import sys\nvfs.mount(vfs.VfsRom(vfs.rom_ioctl(2, 0)), '/rom')\n"
        "sys.path.append('/rom')\nsys.path.append('/rom/lib')\n"
        "import worker\nprint('WORKER', worker.__file__)")

READ_BACK = """\
import vfs, hashlib, binascii
m = memoryview(vfs.rom_ioctl(2, 0))
print('HEAD', binascii.hexlify(m[:64]).decode())
print('SHA', binascii.hexlify(hashlib.sha256(m[:{n}]).digest()).decode())
import os
print('FILES', sorted(os.listdir('/')))
"""


async def _serve(board) -> dict:
    from microswarm.master import Master

    async with Master(key=KEY, cluster="qemu", tcp_port=None, udp_port=None) as master:
        board.run_detached("import main")
        await master.open_serial(board.port)
        (info,) = await master.wait_for_nodes(1, 90)
        data = bytes(range(256)) * 8
        digest = await master.submit("sha256", [[data]], timeout=60)
        return {"info": info, "digest": digest, "data": data}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_romfs_deploy_to_the_qemu_board_joins_and_a_redeploy_writes_nothing(monkeypatch):
    heap = paths.load_board(BOARD)["heap_bytes"]
    qemu_firmware = firmware_tool("MPS2_AN500", heap, esp32=True)
    chains: list[list[str]] = []
    run_chain = Mpremote.run_chain

    def recorded(self, commands, timeout=None):
        chains.append([word for command in commands for word in command[:1]])
        return run_chain(self, commands, timeout=timeout)

    monkeypatch.setattr(Mpremote, "run_chain", recorded)
    images = []

    def built(files):
        images.append(rom_image(files))
        return images[-1]

    monkeypatch.setattr(deploy_module, "rom_image", built)
    with qemu_firmware.Qemu("MPS2_AN500", heap, esp32=True) as board:
        # (the first exec's soft reset comes before its code: the mount stays)
        board.exec((paths.tools_dir() / "qemu_flash.py").read_text()
                   + "\n_msw_flash = mount()\n"
                   "with open('worker.mpy', 'wb') as f:\n    f.write(b'stale')\n")
        options = DeployOptions(board=BOARD, port=board.port, key=KEY, link="serial",
                                node_id="qemu-romfs", cluster="qemu", romfs=True,
                                resume=True, reset=False, wait=False, mpremote_timeout=120)
        lines: list[str] = []
        dry = deploy(dataclasses.replace(options, dry_run=True), out=lines.append)
        assert not [chain for chain in chains if "romfs" in chain or "fs" in chain]
        first = deploy(options, out=lines.append)
        written = [chain for chain in chains if "romfs" in chain]
        del chains[:]
        second = deploy(options, out=lines.append)
        again = [chain for chain in chains if "romfs" in chain]

        _, image, modules = images[0]  # what the first deploy built and wrote
        back = board.exec(READ_BACK.format(n=len(image)) + BOOT)
        served = asyncio.run(_serve(board))
    text = "\n".join(lines)
    assert dry.rom == "would write" and "would write the image to ROM partition 0" in text
    assert first.rom == "written" and first.rom_modules == len(modules) > 20, text
    assert "worker.mpy" in first.plan.remove  # the stale copy would shadow /rom's
    assert set(first.plan.copy) == {"main.py", "board.json", "config.json",
                                    "kpkg_firmware.json"}, text
    assert len(written) == 1
    # the partition holds the image: read back on the board and compared
    assert f"HEAD {image[:64].hex()}" in back
    assert f"SHA {hashlib.sha256(image).hexdigest()}" in back
    files = eval(back.split("FILES", 1)[1].splitlines()[0])  # (a list of names)
    assert not [name for name in files if name.endswith((".mpy", ".py")) and
                name != "main.py"], files
    # nothing changed: the partition is not rewritten, no file is copied
    assert second.rom == "unchanged" and second.plan.empty and again == [], text
    assert "WORKER /rom/worker.mpy" in back
    info = served["info"]
    assert info.board == BOARD and info.heap_total <= heap
    assert served["digest"] == [hashlib.sha256(served["data"]).digest()]
