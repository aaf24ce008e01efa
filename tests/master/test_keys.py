"""One key reader for every command: hex text (whitespace ignored) or raw bytes, 16+ bytes."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys

import pytest

from microswarm.deploy.cli import configure as configure_deploy
from microswarm.keys import DEFAULT_CLUSTER, KeyFileError, parse_key, read_key
from microswarm.master import config
from microswarm.master.cli_master import configure as configure_master
from microswarm.master.cli_master import spec_from_args
from microswarm.vboard.cli import configure as configure_vboard

HEX = "00112233445566778899aabbccddeeff0123456789abcdef"


def test_hex_text_decodes_with_any_whitespace():
    key = bytes.fromhex(HEX)
    for text in (HEX, HEX + "\n", HEX.upper() + "\r\n", " ".join(HEX[i:i + 4]
                 for i in range(0, len(HEX), 4)), HEX[:16] + "\n\t" + HEX[16:] + "\n\n"):
        assert parse_key(text.encode()) == key, text


def test_anything_else_is_raw_bytes_exactly_as_stored():
    assert parse_key(b"a passphrase of some length\n") == b"a passphrase of some length\n"
    assert parse_key(bytes(range(32))) == bytes(range(32))
    odd = HEX + "0"  # an odd number of hex digits is not hex text
    assert parse_key(odd.encode()) == odd.encode()


@pytest.mark.parametrize("data, says", [
    (b"", "0-byte key (raw bytes)"),
    (b"short key", "9-byte key (raw bytes)"),
    (b"00112233445566778899aabbccddee\n", "15-byte key (30 hex digits)"),
])
def test_short_keys_are_refused_naming_the_file(tmp_path, data, says):
    path = tmp_path / "k.key"
    path.write_bytes(data)
    with pytest.raises(KeyFileError) as err:
        read_key(path)
    assert str(path) in str(err.value) and says in str(err.value)
    assert "at least 16 bytes" in str(err.value) and "microswarm keygen" in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(KeyFileError, match="cannot read the key file .*nope.key"):
        read_key(tmp_path / "nope.key")


def test_keygen_writes_a_private_hex_key_and_never_overwrites(tmp_path):
    path = tmp_path / "cluster.key"
    cmd = [sys.executable, "-m", "microswarm.cli", "keygen", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert len(text) == 65 and text.endswith("\n")
    key = read_key(path)
    assert key == bytes.fromhex(text) and len(key) == 32
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr
    assert read_key(path) == key
    forced = subprocess.run(cmd + ["--force"], capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0 and read_key(path) != key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_every_command_and_the_cluster_file_read_the_same_key(tmp_path):
    path = tmp_path / "cluster.key"
    path.write_text(HEX + "\n")
    key = bytes.fromhex(HEX)
    parsers = {}
    for name, configure in (("master", configure_master), ("vboard", configure_vboard),
                            ("deploy", configure_deploy)):
        parsers[name] = argparse.ArgumentParser()
        configure(parsers[name])
    args = parsers["master"].parse_args(["--key-file", str(path)])
    assert spec_from_args(args).key == key
    (tmp_path / "c.toml").write_text('[cluster]\nkey_file = "cluster.key"\n')
    spec = config.load(tmp_path / "c.toml")
    assert spec.key == key
    # one cluster-name default everywhere
    assert spec.name == args.cluster == DEFAULT_CLUSTER
    assert parsers["vboard"].parse_args([]).cluster == DEFAULT_CLUSTER
    assert parsers["deploy"].parse_args(["--board", "unix", "--port", "x", "--key-file",
                                         str(path)]).cluster == DEFAULT_CLUSTER


def test_commands_refuse_a_short_key_file_with_the_reason(tmp_path):
    path = tmp_path / "short.key"
    path.write_text("0011223344\n")
    for command in (["master", "--key-file", str(path), "--port", "0", "--udp-port", "-1",
                     "--control-port", "-1"],
                    ["vboard", "--key-file", str(path), "--flash", str(tmp_path / "f")],
                    ["deploy", "--board", "unix", "--port", "nowhere", "--key-file", str(path)]):
        done = subprocess.run([sys.executable, "-m", "microswarm.cli", *command],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0, command
        assert "5-byte key (10 hex digits)" in done.stderr and str(path) in done.stderr, \
            (command, done.stderr)
    (tmp_path / "c.toml").write_text('[cluster]\nkey_file = "short.key"\n')
    with pytest.raises(config.ClusterFileError, match="5-byte key"):
        config.load(tmp_path / "c.toml")
