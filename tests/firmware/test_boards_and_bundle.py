"""Board definitions follow one schema; the bundle lays out what a board's flash holds."""

from __future__ import annotations

import json

import pytest

from microswarm import bundle, paths

ARCHES = {"rp2350": "armv7emsp", "esp32": "xtensawin", "unix": "x64"}
REQUIRED = {
    "name": str, "description": str, "mcu": str, "heap_bytes": int, "links": list,
    "max_frame": int, "slots": int, "source": str,
}
EXPECTED_BOARDS = {"w5500-evb-pico2", "w6100-evb-pico2", "esp32-devkit-w5500", "pico2-usb",
                   "unix"}


def test_every_expected_board_exists():
    assert set(paths.board_names()) >= EXPECTED_BOARDS


@pytest.mark.parametrize("name", sorted(EXPECTED_BOARDS))
def test_board_schema(name):
    board = paths.load_board(name)
    for field, kind in REQUIRED.items():
        assert isinstance(board.get(field), kind), f"{name}: {field}"
    assert board["name"] == name
    assert board["native_arch"] == ARCHES[board["mcu"]]
    assert 16_000 <= board["heap_bytes"] <= 4 * 1024 * 1024
    assert 256 <= board["max_frame"] <= 65535 + 11
    assert board["max_frame"] <= board["heap_bytes"] // 8
    assert 1 <= board["slots"] <= 16
    assert board["links"] and set(board["links"]) <= {"tcp", "serial"}
    assert board["nic"] in ("w5500", "w6100", None)
    assert isinstance(board.get("frozen_modules", False), bool)
    if board["nic"] is None:
        assert board["spi"] is None
        assert board["net_driver"] in ("builtin", None)
        assert board["net_driver"] == "builtin" or board["links"] == ["serial"]
    else:
        assert board["net_driver"] == "wiznet"
        spi = board["spi"]
        assert set(spi) == {"id", "sck", "mosi", "miso", "cs", "rst", "int", "baudrate"}
        pins = [spi[k] for k in ("sck", "mosi", "miso", "cs", "rst", "int")]
        assert len(set(pins)) == len(pins), "a pin used twice"
        assert all(isinstance(p, int) and 0 <= p <= 39 for p in pins)
        assert 1_000_000 <= spi["baudrate"] <= 80_000_000
        assert "tcp" in board["links"]


def test_wiznet_pico2_boards_use_the_vendor_pin_map():
    for name in ("w5500-evb-pico2", "w6100-evb-pico2"):
        spi = paths.load_board(name)["spi"]
        assert (spi["id"], spi["miso"], spi["cs"], spi["sck"], spi["mosi"], spi["rst"],
                spi["int"]) == (0, 16, 17, 18, 19, 20, 21)


def test_firmware_files_are_the_board_modules():
    names = {p.name for p in bundle.firmware_files()}
    assert {"main.py", "worker.py", "kernels.py", "link_serial.py", "auth.py", "board.py",
            "config.py", "frame.py", "cbor.py", "msgdefs.py"} <= names
    assert "__init__.py" not in names


def test_render_config_round_trips_and_refuses_bad_values():
    text = bundle.render_config("n-1", "c", bytes(range(16)), "10.0.0.2:5880", "tcp", slots=3)
    config = json.loads(text)
    assert config == {"node_id": "n-1", "cluster": "c", "key": bytes(range(16)).hex(),
                      "master": "10.0.0.2:5880", "link": "tcp", "slots": 3}
    assert json.loads(bundle.render_config("n", "c", bytes(16), "", "serial"))["master"] == ""
    for bad in (dict(link="udp"), dict(master="nohost"), dict(master="h:0"), dict(key=b"short")):
        kwargs = {"node_id": "n", "cluster": "c", "key": bytes(16), "master": "", "link": "tcp"}
        kwargs.update(bad)
        with pytest.raises(ValueError):
            bundle.render_config(**kwargs)


def test_layout_holds_modules_board_config_and_matching_native_module():
    config = bundle.render_config("n", "c", bytes(16), "", "tcp")
    files = bundle.layout("w5500-evb-pico2", config)
    assert json.loads(files["board.json"])["name"] == "w5500-evb-pico2"
    assert files["config.json"].decode() == config
    assert files["worker.py"] == (paths.firmware_dir() / "worker.py").read_bytes()
    native = bundle.native_module("armv7emsp")
    assert (bundle.NATIVE_MODULE in files) == (native is not None)
    if native is not None:
        assert files[bundle.NATIVE_MODULE] == native.read_bytes()
    esp = bundle.layout("esp32-devkit-w5500", config)
    assert bundle.NATIVE_MODULE not in esp or bundle.native_module("xtensawin") is not None


def test_write_layout(tmp_path):
    files = {"a.py": b"x = 1\n", "config.json": b"{}"}
    bundle.write_layout(tmp_path / "flash", files)
    assert (tmp_path / "flash" / "a.py").read_bytes() == b"x = 1\n"


def test_a_virtual_board_plays_native_by_arch_not_by_what_was_cross_built(repo):
    """The VM loads the x64 module for any board whose arch the project builds: which
    cross-built modules exist (make demo builds only x64) must not change a test's board."""
    import ast

    tree = ast.parse((repo / "tools" / "build_native.py").read_text())
    targets = next(node.value for node in ast.walk(tree) if isinstance(node, ast.AnnAssign)
                   and getattr(node.target, "id", "") == "TARGETS")
    assert sorted(ast.literal_eval(k) for k in targets.keys) == sorted(bundle.NATIVE_ARCHES)
    assert bundle.virtual_board("w5500-evb-pico2")["native_arch"] == bundle.VM_ARCH
    assert bundle.virtual_board("pico2-usb")["native_arch"] == bundle.VM_ARCH
    assert bundle.virtual_board("esp32-devkit-w5500")["native_arch"] is None
    assert bundle.virtual_board("unix")["native_arch"] == bundle.VM_ARCH
