"""A node with a bad config.json or board.json stops at boot with a message naming the
field (a board then sits at its REPL), and never dials."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import heap_of, make_flash

CASES = [
    ("config.json", {"key": "zz"}, "key must be hex"),
    ("config.json", {"key": "00" * 8}, "at least 16 bytes"),
    ("config.json", {"master": "nohost"}, "host:port"),
    ("config.json", {"master": "h:99999"}, "port out of range"),
    ("config.json", {"link": "serial", "node_id": 5}, "node_id"),
    ("config.json", {"slots": 0}, "slots"),
    ("config.json", {"master": "", "discovery_port": 0}, "discovery_port"),
    ("board.json", {"links": ["radio"]}, "unknown link"),
    ("board.json", {"heap_bytes": "big"}, "heap_bytes"),
]


@pytest.mark.parametrize(("name", "patch", "message"), CASES)
def test_bad_settings_stop_the_node_with_a_message(tmp_path, micropython, name, patch, message):
    flash = make_flash(tmp_path / "flash", "unix", master="127.0.0.1:9")
    doc = json.loads((flash / name).read_text())
    doc.update(patch)
    (flash / name).write_text(json.dumps(doc))
    proc = subprocess.run([micropython, "-X", f"heapsize={heap_of('unix')}", "main.py"],
                          cwd=flash, capture_output=True, timeout=10)
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert out.startswith("microswarm: ") and message in out, out


def test_missing_config_is_named(tmp_path, micropython):
    flash = make_flash(tmp_path / "flash", "unix")
    (flash / "config.json").unlink()
    proc = subprocess.run([micropython, "main.py"], cwd=flash, capture_output=True, timeout=30)
    assert proc.stdout.decode().strip() == "microswarm: config.json is missing"


def test_the_node_keeps_no_prose_of_its_board_file(tmp_path, micropython):
    # the board definition lives for the whole boot: its notes and the simulator's model
    # would only hold heap (ESP32: about 1.9 KB)
    flash = make_flash(tmp_path / "flash", "esp32-devkit-w5500", master="127.0.0.1:9")
    proc = subprocess.run(
        [micropython, "-c", "import config; b = config.load_board(); "
         "print(' '.join(sorted(b))); print(b['name'], b['max_frame'], b['spi']['sck'])"],
        cwd=flash, capture_output=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    keys, rest = proc.stdout.decode().splitlines()
    assert not {"description", "heap_note", "native_note", "source", "model"} & set(keys.split())
    assert rest == "esp32-devkit-w5500 1024 18"


@pytest.mark.parametrize("link", ["serial", "tcp"])
def test_the_node_keeps_only_what_its_link_reads(tmp_path, micropython, link):
    # the board's pins and the TCP settings would hold heap for the whole boot on a node
    # whose link never reads them
    flash = make_flash(tmp_path / "flash", "esp32-devkit-w5500", master="127.0.0.1:9",
                       link=link)
    proc = subprocess.run(
        [micropython, "-c", "import config; b = config.load_board(); "
         "c = config.load_config(b); b = config.kept(b, c['link']); "
         "print(' '.join(sorted(b))); print(' '.join(sorted(c)))"],
        cwd=flash, capture_output=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    board, cfg = proc.stdout.decode().splitlines()
    common = "cluster key link max_frame node_id slots"
    if link == "serial":
        assert (board, cfg) == ("name", common)
    else:
        assert board == "name net_driver nic spi"
        assert cfg == ("cluster discovery_host discovery_port ifconfig key link master "
                       "max_frame node_id slots")
