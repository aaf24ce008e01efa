"""Kernel packages and the registry: argument kinds (the catalog's), checks that name the
argument, content-hash versions, package folders, loading into this process, the native
build agreeing with the Python reference in the VM, and mip install on a blank board."""

from __future__ import annotations

import array
import gc
import hashlib
import json
import random
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from microswarm import kernelpkg, paths
from microswarm.firmware import cbor, kernels, msw_boot, msw_kernel
from microswarm.protocol.catalog import KINDS, TYPED_ARRAY_TAGS

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "kernels"


def ref_histogram(data: bytes, bins: int) -> list[int]:
    """Written from docs/first-kernel.md: bin i counts the bytes v with (v*bins) >> 8 == i."""
    counted = Counter((v * bins) >> 8 for v in data)
    return [counted[i] for i in range(bins)]


def test_the_kinds_are_the_catalogs_plus_typed_arrays(tmp_path):
    assert set(KINDS) <= set(kernelpkg.KINDS)
    assert set(kernelpkg.KINDS) - set(KINDS) == {"tarray"}
    assert set(kernelpkg.TYPECODES) == {code for code, _size in TYPED_ARRAY_TAGS.values()}
    assert kernelpkg.kinds_problem((("x", "number"),)).startswith("argument x: unknown kind")
    assert "unknown kind 'tarray:z'" in kernelpkg.kinds_problem((("x", "tarray:z"),))
    assert kernelpkg.kinds_problem([("a", "tarray:bhf"), ("n", "uint")]) == ""
    for kernel in kernels.builtin_names():  # the built-in declarations are valid too
        assert kernelpkg.kinds_problem(msw_kernel.KERNELS[kernel][msw_kernel.ARGS]) == ""
    # a package declaring an unknown kind is refused where it loads on the host
    bad = tmp_path / "badkinds"
    bad.mkdir()
    (bad / "wrongkind.py").write_text(
        "from msw_kernel import kernel\n\n\n"
        "@kernel('wrongkind', args=(('x', 'number'),))\ndef wrongkind(x):\n    return x\n")
    with pytest.raises(kernelpkg.KernelPackageError, match="kernel wrongkind: argument x: "
                       "unknown kind 'number'"):
        kernelpkg.load([bad])


@pytest.mark.parametrize(("name", "args", "problem"), [
    ("dot", [array.array("h", [1]), "text"], "dot: argument b must be tarray:bhf, got str"),
    ("dot", [array.array("h", [1]), array.array("I", [1])],
     "dot: argument b must be tarray:bhf, got array('I')"),
    ("matmul", [array.array("b", [1])], "matmul takes 5 arguments (a, b, m, k, n), got 1"),
    ("sleep_ms", [-5], "sleep_ms: argument ms must be uint, got negative int"),
    ("sleep_ms", [True], "sleep_ms: argument ms must be uint, got bool"),
    ("mandelbrot", [0, 0, 1, 2, 2, 1.5], "mandelbrot: argument max_iter must be uint, got float"),
    ("zscore_anomaly", [array.array("f", [1.0]), "3"],
     "zscore_anomaly: argument threshold must be float, got str"),
    ("sha256", [12], "sha256: argument data must be bstr, got int"),
    ("zscore_anomaly", [array.array("f", [1.0]), 3], None),  # an int is a float here
    ("sha256", [bytearray(b"x")], None),
    ("echo", [{"any": ["thing"]}], None),
])
def test_checks_name_the_argument(name, args, problem):
    bad = kernels.check(name, args)  # a text by number (msw_texts.py), or None
    assert (bad if bad is None else cbor.text(bad)) == problem


def test_uint8_data_may_arrive_as_bytes_or_a_typed_array():
    msw_kernel.KERNELS["_u8_probe"] = [None, (("d", "tarray:B"),), None, None, None, "t"]
    try:
        for value in (b"\x01", bytearray(2), memoryview(b"ab"), array.array("B", [1])):
            assert kernels.check("_u8_probe", [value]) is None
        assert kernels.check("_u8_probe", [array.array("b", [1])]) is not None
    finally:
        del msw_kernel.KERNELS["_u8_probe"]


def test_builtin_versions_are_the_hash_of_their_file():
    version = {stem: kernelpkg.source_hash((paths.firmware_dir() / f"{stem}.py").read_bytes())
               for stem in ("kernels", "kernels_small")}
    assert all(len(v) == 12 and int(v, 16) >= 0 for v in version.values())
    hashes = msw_boot.hello_fields()["kernel_hashes"]
    small = {"echo", "sleep_ms", "sha256"}
    assert small < set(kernels.builtin_names())
    for name in kernels.builtin_names():
        assert hashes[name] == version["kernels_small" if name in small else "kernels"], name
    name, manifest = kernelpkg.firmware_manifest()
    assert name == "kpkg_firmware.json"
    doc = json.loads(manifest)
    assert doc["modules"] == version
    assert set(doc["kernels"]["kernels_small"]) == small
    assert set(doc["kernels"]["kernels"]) == set(kernels.builtin_names()) - small



def test_manifests_built_on_parallel_threads():
    """Virtual boards build their bundles on parallel threads: the kernels' declarations are
    read with ast.parse, whose AST constructor keeps its depth in state that CPython 3.11
    shares between threads ("SystemError: AST constructor recursion depth mismatch"). A
    short switch interval and a finalizer run by each collection switch threads in the
    middle of a parse."""
    source = (paths.firmware_dir() / "kernels.py").read_bytes()
    expected = kernelpkg.declared_kernels(source)
    errors: list[str] = []

    class Cycle:
        def __del__(self) -> None:
            sum(range(20))  # Python code: the interpreter may switch threads here

    def parse() -> None:
        for _ in range(10):
            cycle = Cycle()
            cycle.self = cycle
            del cycle
            try:
                assert kernelpkg.declared_kernels(source) == expected
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(repr(exc))

    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50)
    try:
        threads = [threading.Thread(target=parse) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
    assert errors == []

def test_a_package_folder_is_checked(tmp_path):
    pkg = kernelpkg.find(EXAMPLES)
    assert pkg.name == "kernels" and set(pkg.modules) == {"histogram"}
    assert set(pkg.natives) == {"fast_hist"}
    assert json.loads(pkg.manifest()) == {
        "package": "kernels",
        "modules": {"histogram": kernelpkg.source_hash(pkg.modules["histogram"].read_bytes())},
    }
    (tmp_path / "empty").mkdir()
    with pytest.raises(kernelpkg.KernelPackageError, match="no .py modules"):
        kernelpkg.find(tmp_path / "empty")
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "frame.py").write_text("x = 1\n")
    with pytest.raises(kernelpkg.KernelPackageError, match="frame would shadow the firmware"):
        kernelpkg.find(tmp_path / "shadow")
    (tmp_path / "bad-name").mkdir()
    (tmp_path / "bad-name" / "k.py").write_text("x = 1\n")
    with pytest.raises(kernelpkg.KernelPackageError, match="must be a Python identifier"):
        kernelpkg.find(tmp_path / "bad-name")
    with pytest.raises(kernelpkg.KernelPackageError, match="no such folder"):
        kernelpkg.find(tmp_path / "missing")


def test_loading_a_package_adds_kernels_with_its_version_and_leaves_the_builtins(tmp_path):
    builtins = kernels.builtin_names()
    (pkg,) = kernelpkg.load([EXAMPLES])
    kernelpkg.load([EXAMPLES])  # again: nothing happens
    assert "histogram" in msw_boot.names() and kernels.builtin_names() == builtins
    assert kernelpkg.version("histogram") == pkg.hashes()["histogram"]
    data = bytes(random.Random(3).randrange(256) for _ in range(3000))
    assert list(kernels.run("histogram", [data, 16])) == ref_histogram(data, 16)
    assert cbor.text(kernels.check("histogram", [data, -1])) == (
        "histogram: argument bins must be uint, got negative int")
    # the same module name from another folder is refused, not silently replaced
    other = tmp_path / "other"
    shutil.copytree(EXAMPLES, other, ignore=shutil.ignore_patterns("build"))
    with pytest.raises(kernelpkg.KernelPackageError, match="already imported"):
        kernelpkg.load([other])
    assert kernelpkg.version("histogram") == pkg.hashes()["histogram"]


_VM_AGREE = """
import sys, json, array
sys.path.insert(0, '')
import msw_boot, msw_kernel as K
msw_boot.load_installed()
out = {"errors": K.errors, "native": msw_boot.native_names(), "hashes": msw_boot.hashes(),
       "cases": []}
entry = K.KERNELS['histogram']
for line in sys.stdin:
    data = bytes.fromhex(line.split()[0])
    bins = int(line.split()[1])
    row = []
    for fn in (entry[K.NATIVE], entry[K.FN]):
        for arg in (data, array.array('B', data)):
            try:
                row.append(list(fn(arg, bins)))
            except ValueError as e:
                row.append('ValueError')
    out["cases"].append(row)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_the_native_build_agrees_with_the_python_kernel_in_the_vm(tmp_path, micropython):
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler for the x64 native build")
    from microswarm import native_cli

    pkg_dir = tmp_path / "kernels"
    shutil.copytree(EXAMPLES, pkg_dir, ignore=shutil.ignore_patterns("build"))
    built = native_cli.build(pkg_dir / "fast_hist.c", "x64")
    assert built == pkg_dir / "build" / "x64" / "fast_hist.mpy"
    flash = tmp_path / "flash"
    flash.mkdir()
    for module in kernelpkg.REGISTRY_FILES:
        shutil.copy(paths.firmware_dir() / module, flash)
    for name, data in kernelpkg.layout_files([pkg_dir], "x64").items():
        (flash / name).write_bytes(data)
    assert (flash / "fast_hist.mpy").read_bytes() == built.read_bytes()
    rng = random.Random(11)
    cases = [(bytes(rng.randrange(256) for _ in range(n)), bins)
             for n, bins in [(1, 4), (1, 1), (4096, 16), (1000, 7), (777, 255), (2048, 256)]]
    cases += [(bytes(range(256)) * 4, 2), (b"\xff" * 100, 3), (b"\x00" * 10, 0),
              (b"\x01", 257)]
    stdin = "".join(f"{data.hex()} {bins}\n" for data, bins in cases)
    proc = subprocess.run([micropython, "-c", _VM_AGREE], input=stdin.encode(),
                          capture_output=True, timeout=120, cwd=flash)
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["errors"] == [] and out["native"] == ["histogram"]
    assert out["hashes"] == kernelpkg.find(pkg_dir).hashes()
    for (data, bins), row in zip(cases, out["cases"], strict=True):
        expected = ref_histogram(data, bins) if 1 <= bins <= 256 else "ValueError"
        assert row == [expected] * 4, (len(data), bins)


@pytest.mark.slow
def test_mip_installs_a_kernel_package_that_the_node_loads(tmp_path, micropython):
    from microswarm.deploy.mpremote import Mpremote
    from microswarm.vboard import VirtualBoard

    pkg_dir = tmp_path / "mykernels"
    shutil.copytree(EXAMPLES, pkg_dir, ignore=shutil.ignore_patterns("build"))
    wrote = subprocess.run([sys.executable, "-m", "microswarm.kernelpkg", str(pkg_dir)],
                           capture_output=True, text=True, timeout=60)
    assert wrote.stdout.split("\n")[:2] == ["wrote package.json", "wrote kpkg_mykernels.json"]
    urls = json.loads((pkg_dir / "package.json").read_text())["urls"]
    assert urls == [["histogram.py", "histogram.py"], ["kpkg_mykernels.json"] * 2]
    with VirtualBoard(workdir=tmp_path / "board", firmware=False, node_id="mip") as vb:
        out = Mpremote(vb.serial_port, timeout=60).run(
            "mip", "install", "--target", "/", str(pkg_dir / "package.json"))
        assert "Done" in out
        for module in kernelpkg.REGISTRY_FILES:
            shutil.copy(paths.firmware_dir() / module, vb.flash)
        probe = ("import msw_boot, msw_kernel; msw_boot.load_installed(); "
                 "print(msw_kernel.errors, msw_boot.hashes(), "
                 "list(msw_kernel.lookup('histogram')[0](b'\\x00\\xff', 2)))")
        answer = subprocess.run([micropython, "-c", probe], capture_output=True, text=True,
                                timeout=60, cwd=vb.flash)
    version = kernelpkg.find(pkg_dir).hashes()["histogram"]
    assert answer.stdout.split("\n")[0] == f"[] {{'histogram': '{version}'}} [1, 1]", answer


_VM_LAZY = """
import sys
sys.path.insert(0, '')
import msw_boot, msw_kernel
msw_boot.load_installed()
before = 'kernels' in sys.modules or 'kernels_small' in sys.modules
about = msw_boot.hello_fields()
small = msw_kernel.check('sha256', [b'abc']) is None and msw_kernel.lookup('sha256')[0](b'')
small = [small, 'kernels_small' in sys.modules, 'kernels' in sys.modules]
from array import array
a = array('h', [1, -2, 3])
bad = msw_kernel.check('dot', [a, a])
fn, native = msw_kernel.lookup('dot')
print(repr([before, 'kernels' in sys.modules, about['kernels'], about['kernel_hashes'],
            about.get('native_kernels', []), bad, fn(a, a), native, msw_kernel.errors,
            msw_boot.native_names(), small]))
"""


def test_a_board_joins_without_the_builtin_kernels_module_and_loads_it_on_first_use(
        tmp_path, micropython):
    """The firmware's manifest lists the kernels of kernels.py and kernels_small.py: a board
    registers them without importing either (HELLO's names, versions and native kernels
    all there), and a module loads on the first check of one of its kernels: a sha256 task
    loads kernels_small.py alone."""
    from microswarm import bundle
    from microswarm.deploy.build import build

    config = bundle.render_config("lazy", "c", bytes(32), "", "serial")
    files = build("unix", config, arch=bundle.VM_ARCH)
    bundle.write_layout(tmp_path, files)
    proc = subprocess.run([micropython, "-c", _VM_LAZY], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (before, after, names, hashes, native, bad, dot, runs_native, errors,
     native_loaded, small) = eval(proc.stdout)
    assert small == [hashlib.sha256(b"").digest(), True, False]
    assert (before, after, bad, dot, errors) == (False, True, None, 14, [])
    assert names == kernels.builtin_names()
    here = msw_boot.hello_fields()["kernel_hashes"]
    assert hashes == {name: here[name] for name in names}
    with_native = bundle.NATIVE_MODULE in files
    assert runs_native is with_native
    assert native == native_loaded  # the stubs' native kernels: those the module's own
    assert bool(native) is with_native
