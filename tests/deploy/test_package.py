"""firmware/package.json: current, and installable with `mpremote mip` from a checkout."""

from __future__ import annotations

import pytest

from microswarm import bundle, paths
from microswarm.deploy.mpremote import Mpremote
from microswarm.deploy.package import package_json


def test_package_json_lists_every_firmware_module():
    committed = (paths.firmware_dir() / "package.json").read_text()
    assert committed == package_json(), "run: python -m microswarm.deploy.package"


@pytest.mark.slow
def test_mip_install_from_the_checkout_puts_the_firmware_on_a_blank_board(blank_vboard):
    package = paths.firmware_dir() / "package.json"
    out = Mpremote(blank_vboard.serial_port, timeout=60).run(
        "mip", "install", "--target", "/", str(package)
    )
    assert "Done" in out
    for module in bundle.firmware_files():
        assert (blank_vboard.flash / module.name).read_bytes() == module.read_bytes()
