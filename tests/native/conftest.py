"""Fixtures for the native module tests: one build per arch per session (a file lock keeps
parallel workers from building at once), the C cores as a host shared library, and the
linker's modules from tools/."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import build_native  # noqa: E402
from natmod import sdk  # noqa: E402


def _build(arch: str) -> Path:
    with build_native.locked(build_native.BUILD / ".lock"):
        return build_native.build(arch)


@pytest.fixture(scope="session")
def build_arch():
    """build(arch) -> .mpy path, serialised across parallel workers; skips the test when
    that arch's cross compiler cannot be had."""

    def build(arch: str) -> Path:
        try:
            return _build(arch)
        except build_native.ToolchainMissing as exc:
            pytest.skip(f"cross compiler for {arch} unavailable, its checks skipped: {exc}")

    return build


@pytest.fixture(scope="session")
def mpy_x64() -> Path:
    return _build("x64")


@pytest.fixture(scope="session", params=["armv6m", "armv7emsp", "rv32imc"])
def mpy_mcu(request, build_arch) -> tuple[str, Path]:
    return request.param, build_arch(request.param)


@pytest.fixture(scope="session")
def sdk_info(mpy_x64) -> tuple[list[str], dict[str, int]]:
    """(static qstrs, mp_fun_table indices) of the sdist the build used."""
    fun_table = json.loads((build_native.BUILD / "fun_table.json").read_text())
    return sdk.static_qstrs(sdk.fetch_sdist(build_native.CACHE)), fun_table


@pytest.fixture(scope="session")
def host_lib(tmp_path_factory) -> ctypes.CDLL:
    """kernels.c and frame.c compiled for this machine, as the module compiles them."""
    out = tmp_path_factory.mktemp("hostlib") / "libmswcore.so"
    sources = [str(build_native.NATIVE / s) for s in ("kernels.c", "frame.c")]
    cmd = ["gcc", "-std=c99", "-Os", "-Wall", "-Werror", "-shared", "-fPIC", *sources, "-o",
           str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return ctypes.CDLL(str(out))
