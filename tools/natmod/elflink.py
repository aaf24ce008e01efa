"""Link one relocatable ELF object (the module's objects merged by `ld -r`) into the text
blob, bss size and relocation list of a dynamic native module.

Layout of the text blob: the section holding `mpy_init` first (the loader calls offset 0),
then every other .text*, .rodata* and .data.rel.ro* section, then memset/memmove stubs,
then the GOT. Every word whose final value depends on where the loader puts things gets an
.mpy relocation: GOT slots, absolute pointers in .data.rel.ro, stub literals.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from .mpyfile import (
    DEST_BSS,
    DEST_FUN_TABLE,
    DEST_OBJ_TABLE,
    DEST_QSTR_TABLE,
    DEST_TEXT,
    NativeModule,
    Reloc,
)


class LinkError(ValueError):
    """The object cannot become a native module; the message says what to change."""


@dataclass(frozen=True)
class Arch:
    name: str
    machine: str
    word: int
    isa: str  # "x64", "thumb" or "riscv"


ARCHES: dict[str, Arch] = {
    "x64": Arch("x64", "EM_X86_64", 8, "x64"),
    "armv6m": Arch("armv6m", "EM_ARM", 4, "thumb"),
    "armv7m": Arch("armv7m", "EM_ARM", 4, "thumb"),
    "armv7emsp": Arch("armv7emsp", "EM_ARM", 4, "thumb"),
    "rv32imc": Arch("rv32imc", "EM_RISCV", 4, "riscv"),
}

# Undefined symbols that name an entry of mp_fun_table (the value is what the loader adds).
FUN_TABLE_SYMBOLS = {
    "mp_type_type": "type_type",
    "mp_type_str": "type_str",
    "mp_type_list": "type_list",
    "mp_type_dict": "type_dict",
    "mp_type_fun_builtin_0": "type_fun_builtin_0",
    "mp_type_fun_builtin_1": "type_fun_builtin_1",
    "mp_type_fun_builtin_2": "type_fun_builtin_2",
    "mp_type_fun_builtin_3": "type_fun_builtin_3",
    "mp_type_fun_builtin_var": "type_fun_builtin_var",
    "mp_type_Exception": "type_Exception",
    "mp_stream_read_obj": "stream_read_obj",
    "mp_stream_readinto_obj": "stream_readinto_obj",
    "mp_stream_unbuffered_readline_obj": "stream_unbuffered_readline_obj",
    "mp_stream_write_obj": "stream_write_obj",
}
# C library calls the compiler may emit, served by a stub jumping through mp_fun_table.
STUB_SYMBOLS = {
    "memset": "memset_",
    "memmove": "memmove_",
    "memcpy": "memmove_",
    "__aeabi_memcpy": "memmove_",
    "__aeabi_memcpy4": "memmove_",
    "__aeabi_memcpy8": "memmove_",
    "__aeabi_memmove": "memmove_",
    "__aeabi_memmove4": "memmove_",
    "__aeabi_memmove8": "memmove_",
}
SPECIAL_SYMBOLS = {
    "mp_fun_table": DEST_FUN_TABLE,
    "mp_native_qstr_table": DEST_QSTR_TABLE,
    "mp_native_obj_table": DEST_OBJ_TABLE,
}
TEXT_PREFIXES = (".text", ".rodata", ".data.rel.ro")
IGNORED_PREFIXES = (".eh_frame", ".ARM.exidx", ".ARM.extab", ".note", ".comment", ".group")

# Resolved symbol: (kind, value). kind: "text" / "bss" (value = offset in that blob,
# Thumb bit included), "stub" (value = C name), or an .mpy destination with value 0 or a
# mp_fun_table index ("fun_entry"), or "got" for _GLOBAL_OFFSET_TABLE_.
Target = tuple[str, int | str]

# ELF relocation type numbers.
R_X86_64_NONE, R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32 = 0, 1, 2, 4
R_X86_64_GOTPCREL, R_X86_64_GOTPCRELX, R_X86_64_REX_GOTPCRELX = 9, 41, 42
R_ARM_NONE, R_ARM_ABS32, R_ARM_REL32, R_ARM_THM_CALL = 0, 2, 3, 10
R_ARM_BASE_PREL, R_ARM_GOT_BREL, R_ARM_THM_JUMP24, R_ARM_TARGET1 = 25, 26, 30, 38
R_ARM_V4BX, R_ARM_GOT_PREL, R_ARM_THM_JUMP11, R_ARM_THM_JUMP8 = 40, 96, 102, 103
R_RISCV_NONE, R_RISCV_32, R_RISCV_BRANCH, R_RISCV_JAL = 0, 1, 16, 17
R_RISCV_CALL, R_RISCV_CALL_PLT, R_RISCV_GOT_HI20, R_RISCV_PCREL_HI20 = 18, 19, 20, 23
R_RISCV_PCREL_LO12_I, R_RISCV_PCREL_LO12_S, R_RISCV_ALIGN = 24, 25, 43
R_RISCV_RVC_BRANCH, R_RISCV_RVC_JUMP, R_RISCV_RELAX, R_RISCV_32_PCREL = 44, 45, 51, 57
# Label arithmetic (jump tables in rodata): type -> (operation, bits).
RISCV_LABEL_MATH = {
    33: ("add", 8), 34: ("add", 16), 35: ("add", 32), 37: ("sub", 8), 38: ("sub", 16),
    39: ("sub", 32), 52: ("sub", 6), 53: ("set", 6), 54: ("set", 8), 55: ("set", 16),
    56: ("set", 32),
}
GOT_TYPES = {
    R_X86_64_GOTPCREL, R_X86_64_GOTPCRELX, R_X86_64_REX_GOTPCRELX, R_ARM_GOT_BREL, R_ARM_GOT_PREL
}
RISCV_GOT_TYPES = {R_RISCV_GOT_HI20}


@dataclass
class _Layout:
    text: bytearray = field(default_factory=bytearray)
    bss_size: int = 0
    base: dict[int, tuple[str, int]] = field(default_factory=dict)  # section index -> place
    stubs: dict[str, int] = field(default_factory=dict)  # C name -> offset in text
    got: dict[Target, int] = field(default_factory=dict)  # target -> offset in text
    got_base: int = 0
    relocs: list[Reloc] = field(default_factory=list)


def _align(value: int, to: int) -> int:
    to = max(to, 1)
    return (value + to - 1) // to * to


def _sign(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class _Linker:
    def __init__(self, elf: ELFFile, arch: Arch, fun_table: dict[str, int]) -> None:
        self.elf = elf
        self.arch = arch
        self.fun_table = fun_table
        self.out = _Layout()
        self.got_types = RISCV_GOT_TYPES if arch.isa == "riscv" else GOT_TYPES
        self.pcrel_hi: dict[int, int] = {}  # RISC-V: auipc offset -> the value it split
        self.symtab = elf.get_section_by_name(".symtab")
        if self.symtab is None:
            raise LinkError("the object has no symbol table")

    # ---- layout -------------------------------------------------------------------------

    def place_sections(self) -> None:
        entry = self.symtab.get_symbol_by_name("mpy_init")
        if not entry or entry[0]["st_shndx"] in ("SHN_UNDEF", "SHN_COMMON"):
            raise LinkError("no mpy_init function: the module needs an entry point")
        entry_sec = entry[0]["st_shndx"]
        if (entry[0]["st_value"] & ~1) != 0:
            raise LinkError("mpy_init must start its section (compile with -ffunction-sections)")
        text_secs, bss_secs = [], []
        for index, sec in enumerate(self.elf.iter_sections()):
            flags = sec["sh_flags"]
            name = sec.name
            if not flags & 0x2 or name.startswith(IGNORED_PREFIXES):  # SHF_ALLOC
                continue
            if sec["sh_type"] == "SHT_NOBITS" or name.startswith(".bss"):
                bss_secs.append(index)
            elif name.startswith(TEXT_PREFIXES):
                text_secs.append(index)
            elif name.startswith(".data"):
                if sec["sh_size"]:
                    raise LinkError(
                        f"section {name} holds {sec['sh_size']} bytes of initialised writable "
                        "data, which a native module cannot have: make it const (rodata) or "
                        "zero-initialised (bss) and set it in mpy_init"
                    )
            else:
                raise LinkError(f"unsupported allocated section {name}")
        text_secs.sort(key=lambda i: i != entry_sec)
        for index in text_secs:
            sec = self.elf.get_section(index)
            offset = _align(len(self.out.text), sec["sh_addralign"])
            self.out.text += bytes(offset - len(self.out.text)) + sec.data()
            self.out.base[index] = ("text", offset)
        for index in bss_secs:
            sec = self.elf.get_section(index)
            offset = _align(self.out.bss_size, sec["sh_addralign"])
            self.out.base[index] = ("bss", offset)
            self.out.bss_size = offset + sec["sh_size"]
        if self.out.base.get(entry_sec) != ("text", 0):
            raise LinkError("mpy_init is not in a text section")

    def _relocations(self):
        """(target section index, relocation section) for every placed section."""
        for sec in self.elf.iter_sections():
            if isinstance(sec, RelocationSection):
                target = sec["sh_info"]
                if target in self.out.base:
                    if self.out.base[target][0] != "text":
                        raise LinkError("relocations in bss")
                    yield target, sec

    def resolve(self, sym_index: int) -> Target:
        if sym_index == 0:
            return ("none", 0)  # no symbol: R_RISCV_RELAX, R_RISCV_ALIGN, R_*_NONE
        sym = self.symtab.get_symbol(sym_index)
        shndx = sym["st_shndx"]
        name = sym.name
        if shndx == "SHN_UNDEF":
            if name in SPECIAL_SYMBOLS:
                return (SPECIAL_SYMBOLS[name], 0)
            if name in FUN_TABLE_SYMBOLS:
                return ("fun_entry", self.fun_table[FUN_TABLE_SYMBOLS[name]])
            if name in STUB_SYMBOLS:
                return ("stub", name)
            if name == "_GLOBAL_OFFSET_TABLE_":
                return ("got", 0)
            if name.startswith("__aeabi_mem"):
                raise LinkError(
                    f"{name} has another argument order than mp_fun_table's memset: "
                    "avoid the construct that makes the compiler call it"
                )
            raise LinkError(
                f"undefined symbol {name!r}: a native module can only call MicroPython through "
                "mp_fun_table (py/dynruntime.h), plus memset/memmove/memcpy"
            )
        if shndx == "SHN_COMMON":
            raise LinkError(f"common symbol {name!r}: compile with -fno-common")
        if not isinstance(shndx, int) or shndx not in self.out.base:
            raise LinkError(f"symbol {name!r} lives in a section that is not linked")
        kind, base = self.out.base[shndx]
        return (kind, base + sym["st_value"])

    def scan(self) -> None:
        """Find the stubs and GOT slots the relocations need, and place them."""
        stubs: set[str] = set()
        got: list[Target] = []
        for _, rel_sec in self._relocations():
            for rel in rel_sec.iter_relocations():
                target = self.resolve(rel["r_info_sym"])
                if target[0] == "stub":
                    stubs.add(str(target[1]))
                if rel["r_info_type"] in self.got_types:
                    if target[0] == "stub":
                        raise LinkError(f"{target[1]} taken by address is not supported")
                    if target not in got:
                        got.append(target)
        text = self.out.text
        for name in sorted(stubs):
            entry = ("fun_entry", self.fun_table[STUB_SYMBOLS[name]])
            if self.arch.isa == "thumb":
                offset = _align(len(text), 4)
                text += bytes(offset - len(text))
                # ldr r3, [pc, #0]; bx r3; .word mp_fun_table[entry] (r3 is free: 3 args)
                text += struct.pack("<HHI", 0x4B00, 0x4718, 0)
                self.out.relocs.append(Reloc((offset + 4) // 4, entry))
                self.out.stubs[name] = offset | 1
            elif self.arch.isa == "riscv":
                offset = _align(len(text), 4)
                text += bytes(offset - len(text))
                # auipc t0, 0; lw t0, 12(t0); jr t0; .word mp_fun_table[entry]
                text += struct.pack("<IIII", 0x00000297, 0x00C2A283, 0x00028067, 0)
                self.out.relocs.append(Reloc((offset + 12) // 4, entry))
                self.out.stubs[name] = offset
            else:
                offset = _align(len(text), 8)
                text += bytes(offset - len(text)) + b"\xff\x25\x00\x00\x00\x00\xcc\xcc"
                self.out.stubs[name] = offset
                if entry not in got:
                    got.append(entry)
        word = self.arch.word
        self.out.got_base = _align(len(text), word)
        text += bytes(self.out.got_base - len(text))
        for target in got:
            slot = len(text)
            self.out.got[target] = slot
            text += bytes(word)
            self.write_pointer(slot, target, 0)
        for name in self.out.stubs:
            if self.arch.isa == "x64":
                entry = ("fun_entry", self.fun_table[STUB_SYMBOLS[name]])
                at = self.out.stubs[name]
                struct.pack_into("<i", text, at + 2, self.out.got[entry] - (at + 6))

    def write_pointer(self, at: int, target: Target, addend: int) -> None:
        """An absolute pointer at text offset `at`: the linked value plus an .mpy relocation
        that adds where the destination ends up."""
        word = self.arch.word
        if at % word:
            raise LinkError(f"absolute pointer at unaligned offset {at:#x}")
        kind, value = target
        if kind == "stub":
            kind, value = "text", self.out.stubs[str(value)]
        if kind in ("text", "bss"):
            stored = int(value) + addend
            dest = DEST_TEXT if kind == "text" else DEST_BSS
        elif kind == "fun_entry":
            stored, dest = addend, ("fun_entry", int(value))
        elif kind in (DEST_FUN_TABLE, DEST_QSTR_TABLE, DEST_OBJ_TABLE):
            stored, dest = addend, kind
        else:
            raise LinkError(f"cannot take the address of {kind}")
        fmt = "<Q" if word == 8 else "<I"
        struct.pack_into(fmt, self.out.text, at, stored & ((1 << (8 * word)) - 1))
        self.out.relocs.append(Reloc(at // word, dest))

    # ---- relocation -----------------------------------------------------------------------

    def code_address(self, target: Target, what: str) -> int:
        """Where a PC-relative reference may point: text or a stub."""
        kind, value = target
        if kind == "text":
            return int(value)
        if kind == "stub":
            return self.out.stubs[str(value)]
        if kind == "bss":
            raise LinkError(
                f"PC-relative reference to bss ({what}): the loader places bss apart from the "
                "text, so bss variables must be non-static globals (reached through the GOT)"
            )
        raise LinkError(f"PC-relative reference to {kind} ({what}) is not supported")

    def apply(self) -> None:
        deferred = []
        for sec_index, rel_sec in self._relocations():
            base = self.out.base[sec_index][1]
            for rel in rel_sec.iter_relocations():
                kind = rel["r_info_type"]
                at = base + rel["r_offset"]
                target = self.resolve(rel["r_info_sym"])
                where = f"{self.elf.get_section(sec_index).name}+{rel['r_offset']:#x}"
                if self.arch.isa == "thumb":
                    self.apply_arm(kind, at, target, where)
                elif self.arch.isa == "x64":
                    self.apply_x64(kind, at, target, rel["r_addend"], where)
                elif kind in (R_RISCV_PCREL_LO12_I, R_RISCV_PCREL_LO12_S):
                    deferred.append((kind, at, target, rel["r_addend"], where))
                else:
                    self.apply_riscv(kind, at, target, rel["r_addend"], where)
        # A %pcrel_lo names the auipc whose %pcrel_hi it completes: apply after every hi.
        for kind, at, target, addend, where in deferred:
            self.apply_riscv(kind, at, target, addend, where)

    def apply_x64(self, kind: int, at: int, target: Target, addend: int, where: str) -> None:
        text = self.out.text
        if kind == R_X86_64_NONE:
            return
        if kind in (R_X86_64_PC32, R_X86_64_PLT32):
            value = self.code_address(target, where) + addend - at
        elif kind in (R_X86_64_GOTPCREL, R_X86_64_GOTPCRELX, R_X86_64_REX_GOTPCRELX):
            value = self.out.got[target] + addend - at
        elif kind == R_X86_64_64:
            self.write_pointer(at, target, addend)
            return
        else:
            raise LinkError(f"unsupported x86-64 relocation type {kind} at {where}")
        if not -(1 << 31) <= value < (1 << 31):
            raise LinkError(f"relocation out of range at {where}")
        struct.pack_into("<i", text, at, value)

    def apply_arm(self, kind: int, at: int, target: Target, where: str) -> None:
        text = self.out.text
        if kind in (R_ARM_NONE, R_ARM_V4BX):
            return
        if kind in (R_ARM_THM_CALL, R_ARM_THM_JUMP24):
            hw1, hw2 = struct.unpack_from("<HH", text, at)
            s = (hw1 >> 10) & 1
            i1 = 1 - (((hw2 >> 13) & 1) ^ s)
            i2 = 1 - (((hw2 >> 11) & 1) ^ s)
            addend = _sign(
                s << 24 | i1 << 23 | i2 << 22 | (hw1 & 0x3FF) << 12 | (hw2 & 0x7FF) << 1, 25
            )
            offset = (self.code_address(target, where) & ~1) + addend - at
            if not -(1 << 24) <= offset < (1 << 24):
                raise LinkError(f"branch out of range at {where}")
            s = (offset >> 24) & 1
            j1 = (1 - ((offset >> 23) & 1)) ^ s
            j2 = (1 - ((offset >> 22) & 1)) ^ s
            hw1 = (hw1 & 0xF800) | s << 10 | (offset >> 12) & 0x3FF
            hw2 = (hw2 & 0xD000) | j1 << 13 | j2 << 11 | (offset >> 1) & 0x7FF
            struct.pack_into("<HH", text, at, hw1, hw2)
            return
        if kind in (R_ARM_THM_JUMP11, R_ARM_THM_JUMP8):
            (hw,) = struct.unpack_from("<H", text, at)
            bits = 11 if kind == R_ARM_THM_JUMP11 else 8
            addend = _sign((hw & ((1 << bits) - 1)) << 1, bits + 1)
            offset = (self.code_address(target, where) & ~1) + addend - at
            if not -(1 << bits) <= offset < (1 << bits):
                raise LinkError(f"short branch out of range at {where}")
            hw = (hw & ~((1 << bits) - 1) & 0xFFFF) | (offset >> 1) & ((1 << bits) - 1)
            struct.pack_into("<H", text, at, hw)
            return
        (addend,) = struct.unpack_from("<i", text, at)
        if kind in (R_ARM_ABS32, R_ARM_TARGET1):
            self.write_pointer(at, target, addend)
            return
        if kind == R_ARM_REL32:
            value = self.code_address(target, where) + addend - at
        elif kind == R_ARM_BASE_PREL:
            if target[0] != "got":
                raise LinkError(f"R_ARM_BASE_PREL against a symbol other than the GOT at {where}")
            value = self.out.got_base + addend - at
        elif kind == R_ARM_GOT_BREL:
            value = self.out.got[target] - self.out.got_base + addend
        elif kind == R_ARM_GOT_PREL:
            value = self.out.got[target] + addend - at
        else:
            raise LinkError(f"unsupported ARM relocation type {kind} at {where}")
        struct.pack_into("<I", text, at, value & 0xFFFFFFFF)


    def apply_riscv(self, kind: int, at: int, target: Target, addend: int, where: str) -> None:
        text = self.out.text
        if kind in (R_RISCV_NONE, R_RISCV_RELAX, R_RISCV_ALIGN):
            return  # no relaxation is done, so alignment padding stays valid
        if kind == R_RISCV_32:
            self.write_pointer(at, target, addend)
            return
        if kind in RISCV_LABEL_MATH:
            operation, bits = RISCV_LABEL_MATH[kind]
            value = self.code_address(target, where) + addend
            size = max(bits // 8, 1)
            mask = (1 << bits) - 1
            old = int.from_bytes(text[at : at + size], "little")
            new = {"add": (old + value), "sub": (old - value), "set": value}[operation] & mask
            new |= old & ~mask & ((1 << (8 * size)) - 1)
            text[at : at + size] = new.to_bytes(size, "little")
            return
        if kind in (R_RISCV_PCREL_LO12_I, R_RISCV_PCREL_LO12_S):
            hi_at = self.code_address(target, where)
            if hi_at not in self.pcrel_hi:
                raise LinkError(f"%pcrel_lo at {where} names no %pcrel_hi")
            value = self.pcrel_hi[hi_at] + addend
            lo = value - (((value + 0x800) >> 12) << 12)
            (insn,) = struct.unpack_from("<I", text, at)
            if kind == R_RISCV_PCREL_LO12_I:
                insn = (insn & 0x000FFFFF) | (lo & 0xFFF) << 20
            else:
                insn = (insn & 0x01FFF07F) | ((lo >> 5) & 0x7F) << 25 | (lo & 0x1F) << 7
            struct.pack_into("<I", text, at, insn)
            return
        if kind == R_RISCV_GOT_HI20:
            value = self.out.got[target] + addend - at
        else:
            value = self.code_address(target, where) + addend - at
        if kind in (R_RISCV_GOT_HI20, R_RISCV_PCREL_HI20, R_RISCV_CALL, R_RISCV_CALL_PLT):
            if not -(1 << 31) <= value < (1 << 31) - 0x800:
                raise LinkError(f"relocation out of range at {where}")
            hi = (value + 0x800) >> 12
            (insn,) = struct.unpack_from("<I", text, at)
            struct.pack_into("<I", text, at, (insn & 0xFFF) | (hi & 0xFFFFF) << 12)
            if kind in (R_RISCV_CALL, R_RISCV_CALL_PLT):
                lo = value - (hi << 12)
                (jalr,) = struct.unpack_from("<I", text, at + 4)
                struct.pack_into("<I", text, at + 4, (jalr & 0x000FFFFF) | (lo & 0xFFF) << 20)
            else:
                self.pcrel_hi[at] = value
            return
        if kind == R_RISCV_32_PCREL:
            struct.pack_into("<I", text, at, value & 0xFFFFFFFF)
            return
        o = value
        if kind == R_RISCV_BRANCH:
            self._check_range(o, 13, where)
            (insn,) = struct.unpack_from("<I", text, at)
            insn = (insn & 0x01FFF07F) | ((o >> 12) & 1) << 31 | ((o >> 5) & 0x3F) << 25
            insn |= ((o >> 1) & 0xF) << 8 | ((o >> 11) & 1) << 7
            struct.pack_into("<I", text, at, insn)
        elif kind == R_RISCV_JAL:
            self._check_range(o, 21, where)
            (insn,) = struct.unpack_from("<I", text, at)
            insn = (insn & 0xFFF) | ((o >> 20) & 1) << 31 | ((o >> 1) & 0x3FF) << 21
            insn |= ((o >> 11) & 1) << 20 | ((o >> 12) & 0xFF) << 12
            struct.pack_into("<I", text, at, insn)
        elif kind == R_RISCV_RVC_BRANCH:
            self._check_range(o, 9, where)
            (hw,) = struct.unpack_from("<H", text, at)
            hw = (hw & 0xE383) | ((o >> 8) & 1) << 12 | ((o >> 3) & 3) << 10
            hw |= ((o >> 6) & 3) << 5 | ((o >> 1) & 3) << 3 | ((o >> 5) & 1) << 2
            struct.pack_into("<H", text, at, hw)
        elif kind == R_RISCV_RVC_JUMP:
            self._check_range(o, 12, where)
            (hw,) = struct.unpack_from("<H", text, at)
            hw = (hw & 0xE003) | ((o >> 11) & 1) << 12 | ((o >> 4) & 1) << 11
            hw |= ((o >> 8) & 3) << 9 | ((o >> 10) & 1) << 8 | ((o >> 6) & 1) << 7
            hw |= ((o >> 7) & 1) << 6 | ((o >> 1) & 7) << 3 | ((o >> 5) & 1) << 2
            struct.pack_into("<H", text, at, hw)
        else:
            raise LinkError(f"unsupported RISC-V relocation type {kind} at {where}")

    @staticmethod
    def _check_range(offset: int, bits: int, where: str) -> None:
        if offset & 1 or not -(1 << (bits - 1)) <= offset < (1 << (bits - 1)):
            raise LinkError(f"branch out of range at {where}")


def link_elf(
    elf_path: Path,
    arch_name: str,
    fun_table: dict[str, int],
    module_qstrs: list[str],
    source_name: str,
) -> NativeModule:
    if arch_name not in ARCHES:
        raise LinkError(f"the linker supports {', '.join(ARCHES)}, not {arch_name}")
    arch = ARCHES[arch_name]
    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        if elf["e_machine"] != arch.machine or elf.elfclass != 8 * arch.word:
            raise LinkError(f"{elf_path.name} is {elf['e_machine']}, not {arch.name}")
        if elf["e_type"] != "ET_REL":
            raise LinkError(f"{elf_path.name} is not a relocatable object")
        linker = _Linker(elf, arch, fun_table)
        linker.place_sections()
        linker.scan()
        linker.apply()
    out = linker.out
    return NativeModule(
        arch=arch.name,
        source_name=source_name,
        qstrs=list(module_qstrs),
        text=bytes(out.text),
        bss_size=out.bss_size,
        relocs=out.relocs,
    )
