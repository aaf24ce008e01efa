"""The docs' commands are tests: every command README.md, docs/, the CLI's help texts and the
example files tell a user to type is run as written, here or by the test named for it.

Where a command names hardware (a board on /dev/ttyACM0, a master at 192.168.1.10), the
stand-in is a virtual board started by another documented command, and the substitution is
stated in HARDWARE below; every other word runs as printed, with the documented defaults
and fixed ports (in a network namespace of the test's own)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.commands import PORTS, REPO, synopsis, told, user_shell

# Docs whose commands a test extracts from the doc itself and runs in order.
RUN_FROM_THE_DOC = {
    "docs/deploy.md": "tests/deploy/test_key_workflow.py",
    "docs/first-kernel.md": "tests/kernels/test_first_kernel.py",
}

# Told but not run by make test as written, and why.
NOT_RUN = {
    "make test": "the suite itself; .ci/run runs exactly this",
    "make demo": ".ci/run runs it before make test, in the README's order; `microswarm demo "
                 "--tcp-boards ...` below runs the same code",
    "microswarm demo": "what `make demo` runs (see above)",
    "microswarm bench sched --json": "minutes of real-time scenarios; tests/sim runs the same "
                                     "code with --quick",
    "microswarm bench scale --json": "5,000 sessions: tests/master/test_bench_scale_and_report.py"
                                     " runs it with 60",
    "microswarm bench all --report out/": "every benchmark, tens of minutes; the report is "
                                          "tested with --only codec",
    "microswarm bench all --report docs/bench --update-readme README.md":
        "rewrites committed files; a test checks the committed results and README agree",
    "microswarm bench footprint --json": "every board file's modules on QEMU, each board joined: "
                                         "minutes; tests/firmware/test_footprint.py runs the "
                                         "headline board's with --no-join",
    "make native": "the same as `python tools/build_native.py --all`; the x64 build and the "
                   "ARM ones run below and in tests/native",
    "microswarm deploy": "a mention in examples/first-kernel.toml; the tutorial's deploy "
                         "commands run in tests/kernels/test_first_kernel.py",
    "microswarm native build": "a mention in examples/kernels/histogram.py; the full command "
                               "runs below",
}

# Hardware in a documented command -> what stands in for it here.
HARDWARE = {
    "/dev/ttyACM0": "the serial port of a virtual board (`microswarm vboard ... --link "
                    "serial`, or a blank one for deploy)",
    "192.168.1.10": "127.0.0.1, where the test's master listens",
}

OFFLINE = [
    "microswarm run mandelbrot width=320 height=240",
    "microswarm keygen cluster.key",
    "microswarm native build examples/kernels/fast_hist.c --arch x64",
    "microswarm native build examples/kernels/fast_hist.c --arch armv7emsp --arch rv32imc",
    "microswarm sim crash-10pct --plot timeline.png",
    "microswarm sim straggler --policy heft",
    "microswarm sim calibrate --kernels examples/kernels",
    "microswarm sim examples/histogram-sim.toml --kernels examples/kernels",
    "microswarm bench codec --json",
    "microswarm bench flood --json",
    "microswarm bench board --json",
    "microswarm sim crash-10pct",
    "microswarm sim scenarios/straggler.toml --seed 7",
    "microswarm sim partition-heal --plot out.png",
    "microswarm sim straggler --trace trace.txt",
    "microswarm demo --tcp-boards 2 --serial-boards 1 --inproc 2 --width 480 --height 360",
]

CLUSTER_FILE = [
    "microswarm up examples/demo.toml",
    "microswarm nodes",
    "microswarm run mandelbrot --cluster examples/demo.toml",
    "microswarm run matmul size=64 --cluster examples/demo.toml",
    "microswarm jobs --cluster examples/demo.toml",
    "microswarm top --cluster examples/demo.toml",
    "microswarm logs vmt1 --cluster examples/demo.toml",
    "microswarm cancel 3 --cluster examples/demo.toml",
]

KEY_FILE = [
    "microswarm keygen cluster.key",
    "microswarm vboard --link serial --key-file cluster.key",
    "microswarm master --key-file cluster.key --serial /dev/ttyACM0",
    "microswarm nodes",
    "microswarm vboard --link serial --key-file cluster.key --kernels examples/kernels",
    "microswarm master --key-file cluster.key --serial /dev/ttyACM0 --inproc 2",
    "microswarm nodes --control 127.0.0.1:5882 --json",
    "microswarm run echo tasks=50 --master 127.0.0.1:5883 --key-file cluster.key",
    "microswarm jobs --master 127.0.0.1:5883 --key-file cluster.key --json",
    "microswarm logs --master 127.0.0.1:5883 --key-file cluster.key --json",
    "microswarm top --master 127.0.0.1:5883 --key-file cluster.key --once",
    "microswarm vboard --board unix --link tcp --master 127.0.0.1:5880 --key-file cluster.key",
    "microswarm vboard --board w5500-evb-pico2 --link tcp --master 127.0.0.1:5880 "
    "--key-file cluster.key",
    "microswarm vboard --board w5500-evb-pico2 --link serial --key-file cluster.key",
    "microswarm vboard --board w5500-evb-pico2 --blank --flash pico2/flash &",
    "microswarm deploy --board w5500-evb-pico2 --port /dev/ttyACM0 --key-file cluster.key "
    "--master 192.168.1.10:5880",
    "microswarm deploy --board w5500-evb-pico2 --port /dev/ttyACM0 --master 192.168.1.10:5880 "
    "--key-file cluster.key --control 127.0.0.1:5882",
    "microswarm deploy --board pico2-usb --port /dev/ttyACM0 --key-file cluster.key",
    "microswarm bench board --port /dev/ttyACM0 --board w5500-evb-pico2 --json --report out/",
]

def _bare(command: str) -> str:
    """The command without a trailing `&` (started in the background)."""
    return command.removesuffix("&").strip()


# Run from the repository's own folder: tools of the source tree.
IN_THE_TREE = [
    "python tools/build_native.py --arch x64",
    "python tools/mpy_link.py dump firmware/native/build/x64/msw_native.mpy",
    "python tools/qemu_firmware.py --board MPS2_AN500 --heap 111168",
    "python tools/qemu_firmware.py --board MPS2_AN500 --heap 111168 --run",
    "python tools/qemu_firmware.py --board MPS2_AN500 --romfs",
]

# The names tool: offline, from the .mpy files deploy builds (test_names_tool_as_written).
NAMES_TOOL = "python tools/mpy_names.py --board esp32-devkit-w5500"
NAMES_TOOL_TCP = "python tools/mpy_names.py --board esp32-devkit-w5500 --link tcp"

# Run as written by another test (the test's text holds the command's words in order).
RUN_BY = {
    "microswarm bench serial --json": "tests/firmware/test_bench_serial.py",
    "python tools/heap_map.py --board esp32-devkit-w5500": "tests/firmware/test_heap_map.py",
    "python tools/heap_map.py --board esp32-devkit-w5500 --romfs":
        "tests/firmware/test_heap_map.py",
    "python tools/heap_map.py --layout": "tests/firmware/test_heap_map.py",
    "python tools/mpy_names.py --board esp32-devkit-w5500 --link tcp --qemu":
        "tests/firmware/test_names.py",
}

RUN_HERE = {_bare(c) for c in (*OFFLINE, *CLUSTER_FILE, *KEY_FILE, *IN_THE_TREE, *RUN_BY,
                                NAMES_TOOL, NAMES_TOOL_TCP)}


def _words_in(text: str, command: str) -> bool:
    """`command` in `text` as written, or as an argv list of its words after the program."""
    words = command.split()[1:]
    return command in text or ", ".join(f'"{w}"' for w in words) in text


def test_every_told_command_is_run_or_says_why_not():
    commands = [t for t in told() if not synopsis(t.command)]
    assert len(commands) > 40  # the extraction finds the docs' commands at all
    for path, test in RUN_FROM_THE_DOC.items():
        assert Path(path).name in (REPO / test).read_text(), f"{test} does not read {path}"
    for command, test in RUN_BY.items():
        assert _words_in((REPO / test).read_text(), command), f"{test} does not run {command}"
    run_elsewhere = {_bare(t.command) for t in commands if t.path in RUN_FROM_THE_DOC}
    missing = [f"{t.source}: {t.command}" for t in commands
               if _bare(t.command) not in RUN_HERE | NOT_RUN.keys() | run_elsewhere]
    assert not missing, "commands the docs give that no test runs:\n" + "\n".join(missing)
    stale = sorted((RUN_HERE | NOT_RUN.keys()) - {_bare(t.command) for t in told()})
    assert not stale, f"listed here but no longer in the docs: {stale}"


def _folder(tmp_path: Path) -> Path:
    for folder in ("examples", "scenarios"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("build"))
    return tmp_path


@pytest.fixture
def shell(tmp_path):
    """Commands that listen on no fixed port, from a folder of their own."""
    with user_shell(_folder(tmp_path)) as sh:
        yield sh


@pytest.fixture
def netns_shell(tmp_path):
    """Commands on the documented fixed ports, in a network namespace of their own."""
    with user_shell(_folder(tmp_path), PORTS) as sh:
        yield sh


def test_offline_commands_as_written(shell):
    out = {command: shell.run(command, timeout=240) for command in OFFLINE
           if "armv7emsp" not in command or shutil.which("arm-none-eabi-gcc")}
    assert "matches the reference" in out[OFFLINE[0]]
    assert (shell.cwd / "cluster.key").stat().st_mode & 0o777 == 0o600
    assert (shell.cwd / "examples/kernels/build/x64/fast_hist.mpy").is_file()
    assert (shell.cwd / "timeline.png").stat().st_size > 1000
    assert "result: OK" in out["microswarm sim straggler --policy heft"]
    assert (shell.cwd / "out.png").is_file() and (shell.cwd / "trace.txt").stat().st_size > 0
    board = json.loads(out["microswarm bench board --json"])
    assert 0 < board["headline"]["value"] <= 1
    flood = json.loads(out["microswarm bench flood --json"])
    assert flood["bad_frames_sent"] > 0 and flood["valid_frames_sent"] > 0
    assert flood["bad_frames_counted"] == flood["bad_frames_sent"]  # every one counted
    assert 0 < flood["log_lines"] <= flood["log_limit"]
    assert flood["headline"]["value"] > 0 and flood["headline"]["baseline"] > 0
    assert json.loads(out["microswarm bench codec --json"])["headline"]["value"] > 0
    assert "result: OK" in out["microswarm sim examples/histogram-sim.toml --kernels "
                               "examples/kernels"]


def test_cluster_file_commands_as_written(netns_shell):
    shell = netns_shell
    up = shell.start(CLUSTER_FILE[0])
    shell.read_until(up, "└")  # the node table's last line: every node joined
    assert "vmt1" in shell.run("microswarm nodes")
    assert "matches the reference" in shell.run(CLUSTER_FILE[2])
    assert "matches" in shell.run(CLUSTER_FILE[3])
    assert "done" in shell.run(CLUSTER_FILE[4])
    top = shell.start(CLUSTER_FILE[5], terminal=True)
    shell.read_until(top, "vmt1")
    assert shell.run(CLUSTER_FILE[6]) is not None
    slow = shell.start("microswarm run mandelbrot width=1280 height=960 max_iter=2000 "
                       "--cluster examples/demo.toml")  # job 3, to be cancelled
    shell.read_until(slow, "sending to the master")
    assert "cancel" in shell.run(CLUSTER_FILE[7])
    assert slow.wait(60) != 0


def _serial_port(output: str) -> str:
    return re.search(r"serial port: (\S+)", output).group(1)


def test_key_file_commands_as_written(netns_shell):
    shell = netns_shell
    shell.run(KEY_FILE[0])
    # README: a board on /dev/ttyACM0; here a virtual board's pty
    board = shell.start(KEY_FILE[1])
    port = _serial_port(shell.read_until(board, "serial port:"))
    master = shell.start(KEY_FILE[2].replace("/dev/ttyACM0", port))
    shell.read_until(master, "listening")
    shell.poll(KEY_FILE[3], "unix-")
    shell.stop(master)
    shell.stop(board)
    # the master's help: the same with two in-process nodes, then the client commands
    board = shell.start(KEY_FILE[4])
    port = _serial_port(shell.read_until(board, "serial port:"))
    master = shell.start(KEY_FILE[5].replace("/dev/ttyACM0", port))
    shell.read_until(master, "listening")
    nodes = json.loads(shell.poll(KEY_FILE[6], "unix-"))
    assert len(nodes["nodes"]) == 3, nodes
    assert "50 tasks" in shell.run(KEY_FILE[7])
    jobs = json.loads(shell.run(KEY_FILE[8]))
    assert [j["state"] for j in jobs] == ["done"], jobs
    json.loads(shell.run(KEY_FILE[9]))
    assert "unix-" in shell.run(KEY_FILE[10])
    for command in KEY_FILE[11:14]:  # boards that dial the master (the README's on a pty)
        shell.read_until(shell.start(command), "serial port:")
    shell.poll(KEY_FILE[3], "w5500")
    # deploy to a blank board standing in for the one on /dev/ttyACM0 at 192.168.1.10
    shell.run(KEY_FILE[14])
    blank = shell.cwd / "pico2" / "flash.serial"
    for command in KEY_FILE[15:]:
        out = shell.run(command.replace("/dev/ttyACM0", str(blank))
                        .replace("192.168.1.10", "127.0.0.1"), timeout=240)
    assert 0 < json.loads(out)["headline"]["value"] <= 1  # bench board, on the serial board
    assert (shell.cwd / "out" / "report.md").is_file()


def _qemu_tool():
    tools = str(REPO / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import qemu_firmware

    return qemu_firmware


def test_source_tree_tools_as_written():
    with user_shell(REPO) as shell:
        shell.run(IN_THE_TREE[0])
        assert "arch x64" in shell.run(IN_THE_TREE[1])
        built = subprocess.run(shell.argv(IN_THE_TREE[2]), cwd=REPO, env=shell.env, text=True,
                               capture_output=True, timeout=600)
        if built.returncode == 2 and "skipped" in built.stderr:  # no MicroPython source here
            pytest.skip(built.stderr.strip())
        assert built.returncode == 0, built.stderr[-3000:]
        assert built.stdout.strip().endswith("firmware.elf"), built.stdout
        qemu = shell.start(IN_THE_TREE[3])
        shell.read_until(qemu, "its UART is /dev/pts/", timeout=60)
        built = subprocess.run(shell.argv(IN_THE_TREE[4]), cwd=REPO, env=shell.env, text=True,
                               capture_output=True, timeout=600)
        assert built.returncode == 0, built.stderr[-3000:]
        assert built.stdout.strip().endswith("firmware.elf"), built.stdout
        # "the build with a ROMFS partition": that firmware hands out a 4 MB ROM segment
        with _qemu_tool().Qemu("MPS2_AN500", romfs=True) as board:
            assert str(board.elf) == built.stdout.strip()
            out = board.exec("import vfs; print(vfs.rom_ioctl(1), len(vfs.rom_ioctl(2, 0)))")
        assert out.split()[-2:] == ["1", str(4 * 1024 * 1024)], out


def test_names_tool_as_written():
    with user_shell(REPO) as shell:
        out = shell.run(NAMES_TOOL)
        tcp = shell.run(NAMES_TOOL_TCP)
    assert "by the join:" in out and "after the first tasks:" in out, out
    assert "wiznet_up" in tcp and "link_serial" not in tcp and "after the first tasks:" in tcp
