"""`microswarm deploy --romfs` where it cannot go: a board without ROMFS support (the
unix-port virtual board: no vfs.rom_ioctl) is refused before anything is written (about
1.5 s), and the probe's answers for a board without a partition or with one too small give
the refusals that say what firmware is needed. The end-to-end test on a board with a
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
