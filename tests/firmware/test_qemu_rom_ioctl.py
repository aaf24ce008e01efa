"""The QEMU firmware's writable ROM partition (tools/qemu_vfs_rom_ioctl.c), driven from
MicroPython on the firmware itself: `vfs.rom_ioctl`'s erase and write commands behave as
NOR flash does (an erase sets whole 4 KB blocks to 0xFF, a write only clears bits, writes
out of range, misaligned or to blocks not erased fail with an errno), and an image written
through them is what VfsRom mounts at /rom after a soft reset.

One boot of the plain MPS2_AN500 build (which the native and docs tests build too) and two
mpremote sessions: about 4 s."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from microswarm import paths
from support.qemu import firmware_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EPERM, EINVAL = 1, 22
SIZE = 0x400000  # the partition MPS2_AN500's board file names

SEMANTICS = """\
import vfs
io = vfs.rom_ioctl
seg = io(2, 0)
out = {'count': io(1), 'len': len(seg), 'min_prepare': io(6, 0), 'bad_id': io(2, 1)}
try:
    seg[0] = 1
    out['view'] = 'writable'
except TypeError:
    out['view'] = 'read-only'
out['write_unopened'] = io(4, 0, 0, bytes(256))
out['complete_unopened'] = io(5, 0)
out['prepare'] = io(3, 0, 0, 8192)
out['erased'] = bytes(seg[0:8192]) == b'\\xff' * 8192
out['write1'] = io(4, 0, 0, b'\\x0f' * 256)
out['after1'] = seg[0]
out['write2'] = io(4, 0, 0, b'\\xf3' * 256)
out['and'] = seg[0]
out['misaligned_offset'] = io(4, 0, 1, bytes(256))
out['short_write'] = io(4, 0, 0, bytes(100))
out['not_erased'] = io(4, 0, 8192, bytes(256))
out['past_end'] = io(4, 0, SIZE_, bytes(256))
out['across_end'] = io(4, 0, SIZE_ - 256, bytes(512))
out['prepare_past_end'] = io(3, 0, SIZE_ - 4096, 8192)
out['prepare_too_long'] = io(3, 0, SIZE_ + 1)
out['prepare_negative'] = io(3, 0, -1, 10)
out['write_block1'] = io(4, 0, 4096, b'\\x55' * 256)
out['part_erase'] = io(3, 0, 100, 10)
out['block0_whole'] = bytes(seg[0:4096]) == b'\\xff' * 4096
out['block1_kept'] = seg[4096]
out['complete'] = io(5, 0)
out['complete_again'] = io(5, 0)
out['write_closed'] = io(4, 0, 0, bytes(256))
print('RESULT', out)
"""

# An image written with the commands in the order `mpremote romfs deploy` uses (prepare
# in 4 KB multiples, 4 KB chunks zero-padded, complete), then a soft reset.
WRITE_IMAGE = """\
import vfs, binascii
io = vfs.rom_ioctl
image = binascii.a2b_base64({b64!r})
n = (len(image) + 4095) // 4096 * 4096
io(3, 0, 0, n)
for at in range(0, len(image), 4096):
    chunk = image[at:at + 4096]
    io(4, 0, at, chunk + bytes(4096 - len(chunk)))
print('COMPLETE', io(5, 0))
"""


def test_rom_partition_writes_as_nor_flash_and_vfsrom_mounts_what_was_written():
    from microswarm.deploy.mpremote import Mpremote, mpremote_command

    qemu_firmware = firmware_tool("MPS2_AN500")
    with tempfile.TemporaryDirectory(prefix="msw-romioctl-") as tmp:
        source = Path(tmp) / "image"
        source.mkdir()
        (source / "rom_probe.py").write_text("VALUE = 'from the ROM partition'\n")
        image = Path(tmp) / "probe.img"
        subprocess.run([mpremote_command(), "romfs", "--no-mpy", "--output", str(image),
                        "build", str(source)], check=True, capture_output=True, timeout=60)
        data = image.read_bytes()
        import binascii

        with qemu_firmware.Qemu("MPS2_AN500") as board:
            out = board.exec(SEMANTICS.replace("SIZE_", str(SIZE)))
            result = eval(out.split("RESULT", 1)[1].strip())  # (a dict of ints and bools)
            written = board.exec(WRITE_IMAGE.format(
                b64=binascii.b2a_base64(data, newline=False).decode()))
            # a fresh mpremote session soft-resets the board: mp_init mounts the image
            after = Mpremote(board.port, timeout=60).exec(
                "import sys, rom_probe\nprint(rom_probe.__file__, rom_probe.VALUE, "
                "sys.path.index('') < sys.path.index('/rom'))")
    assert result == {
        "count": 1, "len": SIZE, "min_prepare": 4096, "bad_id": -EINVAL, "view": "read-only",
        "write_unopened": -EPERM, "complete_unopened": -EPERM,
        "prepare": 256, "erased": True,
        "write1": 0, "after1": 0x0F, "write2": 0, "and": 0x03,  # old & new
        "misaligned_offset": -EINVAL, "short_write": -EINVAL, "not_erased": -EPERM,
        "past_end": -EINVAL, "across_end": -EINVAL, "prepare_past_end": -EINVAL,
        "prepare_too_long": -EINVAL, "prepare_negative": -EINVAL,
        "write_block1": 0, "part_erase": 256, "block0_whole": True, "block1_kept": 0x55,
        "complete": 0, "complete_again": -EPERM, "write_closed": -EPERM,
    }
    assert "COMPLETE 0" in written
    # imported from the image; and the flash's root ('') is searched before /rom: a
    # module's copy left there would be imported instead (deploy --romfs removes them)
    assert "/rom/rom_probe.py from the ROM partition True" in after
