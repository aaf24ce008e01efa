"""Run the machine code of a built .mpy (Thumb or RISC-V) under the unicorn CPU emulator.

The harness does what MicroPython's loader does (places text and bss, applies the .mpy
relocations), calls mpy_init, and then lets tests call the module's functions with Python
arguments. mp_fun_table is fake: each entry used by the module is a Python hook that plays
the part of the runtime on Python objects (ints, array.array, bytes, exceptions), so a
result can be compared directly with the pure-Python kernels. Only functions whose entries
are implemented here can run; any other entry stops with a clear error.
"""

from __future__ import annotations

import array
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from unicorn import (
    UC_ARCH_ARM,
    UC_ARCH_RISCV,
    UC_HOOK_CODE,
    UC_MODE_MCLASS,
    UC_MODE_RISCV32,
    UC_MODE_THUMB,
    Uc,
)
from unicorn import arm_const as arm
from unicorn import riscv_const as rv

from .mpyfile import NativeModule

TEXT, BSS, HEAP, STACK = 0x1000_0000, 0x2000_0000, 0x2100_0000, 0x2200_0000
# The loader puts text and bss in heap blocks, which are only 16-byte aligned on a board:
# load them off any larger boundary so that code assuming more would fail here too.
TEXT_AT, BSS_AT = TEXT + 16, BSS + 16
STACK_FILL = 0xA5
TABLE, HOOKS, QSTRS, SELF, HANDLES = 0x3000_0000, 0x3001_0000, 0x3002_0000, 0x3003_0000, 0x4000_0000
HEAP_SIZE, STACK_SIZE, HOOK_SLOTS = 0x40_0000, 0x1_0000, 128
RETURN = HOOKS + 4 * HOOK_SLOTS  # the emulation ends when code returns here
MODULE_QSTR_BASE = 0x1000  # fake qstr numbers for the module's own qstrs



@dataclass(frozen=True)
class Cpu:
    uc_arch: int
    uc_mode: int
    model: int
    args: tuple[int, int, int, int]  # registers of the first four integer arguments
    sp: int
    ra: int  # where a call's return address goes
    pc: int
    ret: bytes  # a 4-byte "return to caller" for the hook slots
    code_bit: int  # set in code addresses (Thumb)
    float_arg: int | None  # register of a float argument under a hard-float ABI


_THUMB = dict(uc_arch=UC_ARCH_ARM, uc_mode=UC_MODE_THUMB | UC_MODE_MCLASS,
              args=(arm.UC_ARM_REG_R0, arm.UC_ARM_REG_R1, arm.UC_ARM_REG_R2, arm.UC_ARM_REG_R3),
              sp=arm.UC_ARM_REG_SP, ra=arm.UC_ARM_REG_LR, pc=arm.UC_ARM_REG_PC,
              ret=b"\x70\x47\x00\xbf", code_bit=1)  # bx lr; nop
CPUS = {
    "armv6m": Cpu(model=arm.UC_CPU_ARM_CORTEX_M0, float_arg=None, **_THUMB),
    "armv7m": Cpu(model=arm.UC_CPU_ARM_CORTEX_M3, float_arg=None, **_THUMB),
    "armv7emsp": Cpu(model=arm.UC_CPU_ARM_CORTEX_M4, float_arg=arm.UC_ARM_REG_S0, **_THUMB),
    "rv32imc": Cpu(UC_ARCH_RISCV, UC_MODE_RISCV32, rv.UC_CPU_RISCV32_SIFIVE_E31,
                   (rv.UC_RISCV_REG_A0, rv.UC_RISCV_REG_A1, rv.UC_RISCV_REG_A2,
                    rv.UC_RISCV_REG_A3),
                   rv.UC_RISCV_REG_SP, rv.UC_RISCV_REG_RA, rv.UC_RISCV_REG_PC,
                   b"\x67\x80\x00\x00", 0, None),  # jalr x0, 0(ra)
}
NATIVE_INT, NATIVE_UINT, NATIVE_BOOL, NATIVE_QSTR = 2, 3, 1, 8


class EmulationError(RuntimeError):
    """The emulated code did something the harness does not model (or faulted)."""


class Buffer:
    """A Python buffer copied into emulator memory, seen by the code as an object."""

    def __init__(self, pytype: type, addr: int, nbytes: int, typecode: str) -> None:
        self.pytype, self.addr, self.nbytes, self.typecode = pytype, addr, nbytes, typecode


class ByRef:
    def __init__(self, addr: int, nbytes: int) -> None:
        self.addr, self.nbytes = addr, nbytes


class ArrayModule:
    """Stands for MicroPython's `array` module."""


class EmulatedModule:
    def __init__(self, mod: NativeModule, fun_table: dict[str, int], static_qstrs: list[str]):
        if mod.arch not in CPUS:
            raise EmulationError(f"no emulator model for {mod.arch}")
        self.mod = mod
        self.cpu = cpu = CPUS[mod.arch]
        self.uc = Uc(cpu.uc_arch, cpu.uc_mode)
        self.uc.ctl_set_cpu_model(cpu.model)
        self.qstr_names = {i + 1: s for i, s in enumerate(static_qstrs)}
        self.qstr_names.update({MODULE_QSTR_BASE + i: str(q) for i, q in enumerate(mod.qstrs)})
        self.handles: dict[int, Any] = {}
        self.handle_of: dict[int, int] = {}
        self.heap_next = HEAP
        self.sizes: dict[int, int] = {}
        self.globals: dict[str, int] = {}
        self.pending: BaseException | None = None
        self.stack_used = 0
        regions = ((TEXT, len(mod.text) + 16), (BSS, mod.bss_size + 16), (HEAP, HEAP_SIZE),
                   (STACK, STACK_SIZE), (TABLE, 0x4_0000), (HANDLES, 0x10_0000))
        for base, size in regions:
            self.uc.mem_map(base, (size + 0xFFFF) & ~0xFFFF or 0x1_0000)
        self.index_name = {i: name for name, i in fun_table.items() if not name.startswith("__")}
        self.const_none = self.box(None)
        self.types = {name: self._handle(("fun_type", name)) for name in fun_table
                      if name.startswith("type_")}
        words = []
        for i in range(fun_table["__size__"]):
            name = self.index_name.get(i, "")
            if name in ("const_none", "const_false", "const_true"):
                words.append(self.box({"const_none": None, "const_false": False,
                                       "const_true": True}[name]))
            elif name.startswith("type_"):
                words.append(self.types[name])
            else:
                words.append(HOOKS + 4 * i | cpu.code_bit)
        self.uc.mem_write(TABLE, struct.pack(f"<{len(words)}I", *words))
        self.uc.mem_write(HOOKS, cpu.ret * (HOOK_SLOTS + 1))
        self.uc.hook_add(UC_HOOK_CODE, self._on_hook, begin=HOOKS, end=HOOKS + 4 * HOOK_SLOTS - 1)
        qtable = [0] + [MODULE_QSTR_BASE + i for i in range(len(mod.qstrs))]
        self.uc.mem_write(QSTRS, struct.pack(f"<{len(qtable)}H", *qtable))
        self.uc.mem_write(SELF, struct.pack("<4I", 0, SELF + 0x100, 0, 0))
        self._load()
        self.call_raw(TEXT_AT | cpu.code_bit, [SELF, 0, 0, 0])

    # ---- objects ----------------------------------------------------------------------

    def _handle(self, obj: Any) -> int:
        key = id(obj)
        if key in self.handle_of:
            return self.handle_of[key]
        addr = HANDLES + 16 * (len(self.handles) + 1)
        self.handles[addr] = obj
        self.handle_of[key] = addr
        return addr

    def box(self, obj: Any) -> int:
        if isinstance(obj, int) and not isinstance(obj, bool) and -(1 << 30) <= obj < (1 << 30):
            return (obj << 1 | 1) & 0xFFFFFFFF
        return self._handle(obj)

    def unbox(self, word: int) -> Any:
        if word & 1:
            return struct.unpack("<i", struct.pack("<I", word))[0] >> 1
        if word not in self.handles:
            raise EmulationError(f"the code passed {word:#x}, which is no object")
        return self.handles[word]

    def to_emu(self, value: Any) -> int:
        if isinstance(value, array.array):
            raw = value.tobytes()
            addr = self.alloc(len(raw))
            self.uc.mem_write(addr, raw)
            return self._handle(Buffer(array.array, addr, len(raw), value.typecode))
        if isinstance(value, bytes | bytearray):
            addr = self.alloc(len(value))
            self.uc.mem_write(addr, bytes(value))
            return self._handle(Buffer(type(value), addr, len(value), "B"))
        return self.box(value)

    def alloc(self, n: int) -> int:
        addr = self.heap_next
        self.heap_next = (addr + max(n, 1) + 7) & ~7
        if self.heap_next > HEAP + HEAP_SIZE:
            raise EmulationError("emulator heap exhausted")
        self.sizes[addr] = n
        return addr

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.uc.mem_read(addr, n)) if n else b""

    def cstr(self, addr: int) -> str:
        raw = bytearray()
        while (b := self.read(addr + len(raw), 1)) != b"\x00":
            raw += b
        return raw.decode()

    # ---- loading and calling ------------------------------------------------------------

    def _load(self) -> None:
        text = bytearray(self.mod.text)
        dests = {"text": TEXT_AT, "bss": BSS_AT, "qstr_table": QSTRS, "fun_table": TABLE}
        table = self.read(TABLE, 4 * len(self.index_name) + 64)
        for r in self.mod.relocs:
            if isinstance(r.dest, tuple):
                add = struct.unpack_from("<I", table, 4 * r.dest[1])[0]
            else:
                add = dests[r.dest]
            (value,) = struct.unpack_from("<I", text, 4 * r.word)
            struct.pack_into("<I", text, 4 * r.word, (value + add) & 0xFFFFFFFF)
        self.uc.mem_write(TEXT_AT, bytes(text))

    def call_raw(self, fn: int, args: list[int]) -> int:
        cpu = self.cpu
        for reg, value in zip(cpu.args, args, strict=False):
            self.uc.reg_write(reg, value)
        top = STACK + STACK_SIZE - 64
        self.uc.mem_write(STACK, bytes([STACK_FILL]) * (top - STACK))
        self.uc.reg_write(cpu.sp, top)
        self.uc.reg_write(cpu.ra, RETURN | cpu.code_bit)
        self.pending = None
        try:
            self.uc.emu_start(fn, RETURN, timeout=30_000_000)
        except Exception as exc:
            if self.pending is None:
                pc = self.uc.reg_read(cpu.pc)
                raise EmulationError(f"emulation fault at pc={pc:#x}: {exc}") from exc
        stack = self.read(STACK, top - STACK)
        untouched = len(stack) - len(stack.lstrip(bytes([STACK_FILL])))
        self.stack_used = (top - STACK) - untouched  # bytes below the caller's sp written
        if self.pending is not None:
            raise self.pending
        return self.uc.reg_read(cpu.args[0])

    def call(self, name: str, *args: Any) -> Any:
        """Call module function `name` with Python arguments; return a Python result."""
        fun = self.globals[name]
        fun_type, word1, word2 = struct.unpack("<3I", self.read(fun, 12))
        words = [self.to_emu(a) for a in args]
        var = self.types["type_fun_builtin_var"]
        if fun_type == var:
            argv = self.alloc(4 * len(words))
            self.uc.mem_write(argv, struct.pack(f"<{len(words)}I", *words))
            result = self.call_raw(word2 | self.cpu.code_bit, [len(words), argv])
        else:
            result = self.call_raw(word1 | self.cpu.code_bit, words)
        return self.unbox(result)

    # ---- the fake runtime -----------------------------------------------------------------

    def _on_hook(self, uc: Uc, address: int, size: int, _data: Any) -> None:
        name = self.index_name.get((address - HOOKS) // 4, "?")
        hook: Callable[..., Any] | None = getattr(self, "rt_" + name, None)
        regs = [uc.reg_read(r) for r in self.cpu.args]
        try:
            if hook is None:
                raise EmulationError(f"mp_fun_table.{name} is not modelled by the harness")
            result = hook(*regs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of call()
            self.pending = exc
            uc.emu_stop()
            return
        uc.reg_write(self.cpu.args[0], (result or 0) & 0xFFFFFFFF)

    def rt_swap_globals(self, *_: int) -> int:
        return 0

    def rt_import_name(self, qstr: int, *_: int) -> int:
        if self.qstr_names[qstr] != "array":
            raise EmulationError(f"import of {self.qstr_names[qstr]} is not modelled")
        return self._handle(ArrayModule)

    def rt_load_attr(self, base: int, qstr: int, *_: int) -> int:
        if self.unbox(base) is ArrayModule and self.qstr_names[qstr] == "array":
            return self._handle(array.array)
        raise EmulationError(f"attribute {self.qstr_names[qstr]} is not modelled")

    def rt_load_global(self, qstr: int, *_: int) -> int:
        import builtins

        return self._handle(getattr(builtins, self.qstr_names[qstr]))

    rt_load_name = rt_load_global

    def rt_store_global(self, qstr: int, obj: int, *_: int) -> int:
        self.globals[self.qstr_names[qstr]] = obj
        return 0

    def rt_obj_get_type(self, obj: int, *_: int) -> int:
        value = self.unbox(obj)
        return self._handle(value.pytype if isinstance(value, Buffer) else type(value))

    def rt_native_from_obj(self, obj: int, kind: int, *_: int) -> int:
        value = self.unbox(obj)
        if kind == NATIVE_BOOL:
            return int(bool(value))
        if not isinstance(value, int):
            raise TypeError(f"can't convert {type(value).__name__} to int")
        if kind == NATIVE_INT and not -(1 << 31) <= value < (1 << 31):
            raise OverflowError("overflow converting long int to machine word")
        return value & 0xFFFFFFFF

    def rt_native_to_obj(self, val: int, kind: int, *_: int) -> int:
        if kind == NATIVE_INT:
            return self.box(struct.unpack("<i", struct.pack("<I", val))[0])
        if kind == NATIVE_UINT:
            return self.box(val)
        if kind == NATIVE_QSTR:
            return self._handle(self.qstr_names[val])
        if kind == NATIVE_BOOL:
            return self.box(bool(val))
        raise EmulationError(f"native_to_obj kind {kind} is not modelled")

    def rt_get_buffer(self, obj: int, info: int, flags: int, *_: int) -> int:
        value = self.unbox(obj)
        if not isinstance(value, Buffer):
            if flags & 4:
                raise TypeError("object with buffer protocol required")
            return 0
        self.uc.mem_write(info, struct.pack("<IIi", value.addr, value.nbytes,
                                            ord(value.typecode)))
        return 1

    def rt_realloc_(self, ptr: int, n: int, _allow_move: int, *_: int) -> int:
        if n == 0:
            return 0
        new = self.alloc(n)
        if ptr:
            self.uc.mem_write(new, self.read(ptr, min(n, self.sizes.get(ptr, 0))))
        return new

    def rt_raise_msg(self, exc_type: int, msg: int, *_: int) -> int:
        raise self.unbox(exc_type)(self.cstr(msg))

    def rt_raise(self, obj: int, *_: int) -> int:
        raise self.unbox(obj)

    def rt_obj_new_bytearray_by_ref(self, n: int, ptr: int, *_: int) -> int:
        return self._handle(ByRef(ptr, n))

    def rt_obj_new_bytes(self, ptr: int, n: int, *_: int) -> int:
        return self._handle(self.read(ptr, n))

    def rt_obj_new_str(self, ptr: int, n: int, *_: int) -> int:
        return self._handle(self.read(ptr, n).decode())

    def rt_new_list(self, n: int, items: int, *_: int) -> int:
        words = struct.unpack(f"<{n}I", self.read(items, 4 * n))
        return self._handle([self.unbox(w) for w in words])

    def rt_call_function_n_kw(self, fun: int, n_args_kw: int, args: int, *_: int) -> int:
        n = n_args_kw & 0xFF
        values = [self.unbox(w) for w in struct.unpack(f"<{n}I", self.read(args, 4 * n))]
        if self.unbox(fun) is array.array and len(values) == 2 and isinstance(values[1], ByRef):
            ref = values[1]
            return self._handle(array.array(values[0], self.read(ref.addr, ref.nbytes)))
        raise EmulationError("call_function_n_kw: only array.array(code, bytes) is modelled")

    def rt_binary_get_val_array(self, typecode: int, ptr: int, index: int, *_: int) -> int:
        code = chr(typecode)
        size = struct.calcsize("<" + code)
        (value,) = struct.unpack("<" + code, self.read(ptr + index * size, size))
        return self.box(value)

    def rt_obj_new_float_from_f(self, r0: int, *_: int) -> int:
        if self.cpu.float_arg is not None:
            r0 = self.uc.reg_read(self.cpu.float_arg)
        return self._handle(struct.unpack("<f", struct.pack("<I", r0 & 0xFFFFFFFF))[0])

    def rt_memset_(self, dest: int, value: int, n: int, *_: int) -> int:
        self.uc.mem_write(dest, bytes([value & 0xFF]) * n)
        return dest

    def rt_memmove_(self, dest: int, src: int, n: int, *_: int) -> int:
        self.uc.mem_write(dest, self.read(src, n))
        return dest
