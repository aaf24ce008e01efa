"""`microswarm deploy --romfs` where it cannot go: a board without ROMFS support (the
unix-port virtual board: no vfs.rom_ioctl) is refused before anything is written (about
1.5 s), and the probe's answers for a board without a partition or with one too small give
the refusals that say what firmware is needed. The probe's board code also runs here in
CPython against stand-ins for both kinds of partition (a block device as the ESP32 and RP2
ports hand out, and memory), which no firmware here offers. The end-to-end test on a board with a
writable ROM partition is tests/firmware/test_qemu_deploy_romfs.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from microswarm.deploy.romfs import probe_partition

KEY = bytes(range(104, 136))


def test_cli_romfs_is_refused_on_a_board_without_a_rom_partition(blank_vboard, tmp_path):
    key_file = tmp_path / "cluster.key"
    key_file.write_text(KEY.hex() + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "microswarm.cli", "deploy", "--board", "unix",
         "--port", blank_vboard.serial_port, "--key-file", str(key_file), "--romfs"],
        capture_output=True, timeout=60)
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 1, out
    assert "no ROMFS support (no vfs.rom_ioctl)" in out and "ROM partition" in out
    assert sorted(p.name for p in blank_vboard.flash.iterdir()) == []  # nothing written


class _Said:
    """Stands in for mpremote: the board's answer to the partition probe."""

    timeout = 30.0

    def __init__(self, output: str) -> None:
        self.output = output

    def exec(self, code: str, timeout: float | None = None) -> str:
        return self.output


@pytest.mark.parametrize("answer, refusal", [
    (":rom missing", "no ROMFS support (no vfs.rom_ioctl)"),
    (":rom none 0", "reports no ROM partition (vfs.rom_ioctl(1) is 0)"),
    (":rom 1 4096 4096 " + "0" * 64, "(8192 bytes) does not fit the board's 4096-byte"),
    (":rom 1 1048576 4096 " + "0" * 64, None),
])
def test_a_partition_that_cannot_take_the_image_is_refused_with_what_is_needed(answer,
                                                                               refusal):
    part = probe_partition(_Said(f"noise\n{answer}\n"), bytes(8192))
    said = part.refusal(8192)
    if refusal is None:
        assert said is None and part.size == 1048576
    else:
        assert refusal in said
        if "fit" not in refusal:
            assert "partition table" in said and "MICROPY_HW_ROMFS_BYTES" in said


def test_romfs_with_source_is_refused_before_the_board_is_asked(tmp_path):
    from microswarm.deploy.deploy import DeployOptions, deploy

    with pytest.raises(ValueError, match="--romfs puts the compiled"):
        deploy(DeployOptions(board="unix", port=str(tmp_path / "no-port"), key=KEY,
                             romfs=True, compiled=False))


class _Vfs:
    """A `vfs` module for the probe's board code run by CPython: the partition as the
    ESP32 and RP2 ports hand it out (a block device: ioctl 4 and 5, readblocks) or as
    memory (a memoryview, with GET_MIN_PREPARE)."""

    def __init__(self, data: bytes, block_device: bool) -> None:
        self.data, self.block_device = data, block_device

    def rom_ioctl(self, cmd, *args):
        if cmd == 1:
            return 1
        if cmd == 6:
            return 4096
        if cmd == 2 and self.block_device:
            return _BlockDevice(self.data)
        return memoryview(self.data) if cmd == 2 else -22


class _BlockDevice:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def ioctl(self, op, arg):
        return {4: len(self.data) // 4096, 5: 4096}[op]

    def readblocks(self, block, buf):
        buf[:] = self.data[block * 4096:block * 4096 + len(buf)]


class _RunsHere:
    """Runs the board code in this interpreter with `vfs` standing for the board's."""

    timeout = 30.0

    def __init__(self, vfs) -> None:
        self.vfs = vfs

    def exec(self, code: str, timeout: float | None = None) -> str:
        import contextlib
        import io

        out = io.StringIO()
        saved = sys.modules.get("vfs")
        sys.modules["vfs"] = self.vfs
        try:
            with contextlib.redirect_stdout(out):
                exec(code, {})
        finally:
            if saved is None:
                sys.modules.pop("vfs")
            else:
                sys.modules["vfs"] = saved
        return out.getvalue()


@pytest.mark.parametrize("block_device", [True, False])
def test_the_probe_hashes_what_the_partition_holds_for_both_kinds_of_partition(block_device):
    import hashlib

    data = bytes((i * 31 + (i >> 9)) & 0xFF for i in range(4096 * 8))
    image = data[:10000]  # an image the partition holds, and one it does not
    part = probe_partition(_RunsHere(_Vfs(data, block_device)), image)
    assert (part.state, part.size, part.block) == ("ok", len(data), 4096)
    assert part.held == hashlib.sha256(image).hexdigest()
    other = probe_partition(_RunsHere(_Vfs(data, block_device)), bytes(10000))
    assert other.held == part.held  # (what the partition holds, not the image)


def test_the_probe_tells_no_rom_ioctl_from_no_partition():
    class NoPartition:
        def rom_ioctl(self, cmd, *args):
            return 0 if cmd == 1 else -22

    assert probe_partition(_RunsHere(NoPartition()), b"x").state == "none"
    assert probe_partition(_RunsHere(object()), b"x").state == "missing"
