"""The .mpy v6.3 container of a dynamic native module: one viper raw code with a text blob,
optional bss and a relocation stream that the loader applies word by word.

`write_mpy` builds the bytes; `read_mpy` parses them back (used by tests and the emulator
harness).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MPY_VERSION = 6
MPY_SUB_VERSION = 3
SMALL_INT_BITS = 31  # header byte 3: the loader only checks it is <= its own

ARCHES: dict[str, int] = {
    "x86": 1,
    "x64": 2,
    "armv6": 3,
    "armv6m": 4,
    "armv7m": 5,
    "armv7em": 6,
    "armv7emsp": 7,
    "armv7emdp": 8,
    "xtensa": 9,
    "xtensawin": 10,
    "rv32imc": 11,
    "rv64imc": 12,
}
ARCH_NAMES = {number: name for name, number in ARCHES.items()}

CODE_KIND_VIPER = 2
SCOPE_RELOC = 0x10
SCOPE_RODATA = 0x20
SCOPE_BSS = 0x40

# Relocation destinations: what the loader adds to a word.
DEST_TEXT = "text"
DEST_RODATA = "rodata"
DEST_BSS = "bss"
DEST_QSTR_TABLE = "qstr_table"
DEST_OBJ_TABLE = "obj_table"
DEST_FUN_TABLE = "fun_table"  # &mp_fun_table
# ("fun_entry", i): the value of mp_fun_table[i]
_AREA_CODES = {DEST_TEXT: 0, DEST_RODATA: 1, DEST_BSS: 2}
_AREA_NAMES = {v: k for k, v in _AREA_CODES.items()}


class MpyFormatError(ValueError):
    """The bytes are not a dynamic native module this reader understands."""


Dest = str | tuple[str, int]


@dataclass(frozen=True)
class Reloc:
    word: int  # index of the word to adjust, counted in machine words
    dest: Dest
    in_rodata: bool = False  # the word lives in the separate rodata blob (xtensawin)


@dataclass
class NativeModule:
    arch: str
    source_name: str
    qstrs: list[str | int]  # module qstrs after the source name: text, or a static qstr number
    text: bytes
    bss_size: int = 0
    rodata: bytes = b""
    relocs: list[Reloc] = field(default_factory=list)


def vuint(value: int) -> bytes:
    """MicroPython's variable-length unsigned int: 7-bit groups, most significant first."""
    if value < 0:
        raise ValueError("vuint of a negative value")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _qstr_bytes(q: str | int) -> bytes:
    if isinstance(q, int):
        return vuint(q << 1 | 1)
    raw = q.encode()
    return vuint(len(raw) << 1) + raw + b"\x00"


def encode_relocs(relocs: list[Reloc]) -> bytes:
    """The loader's relocation stream, ended by 0xFF. Runs of adjacent words with the same
    text/rodata/bss destination collapse into one op with a count."""
    out = bytearray()
    ordered = sorted(relocs, key=lambda r: (r.in_rodata, r.word))
    cursor: tuple[bool, int] | None = None
    i = 0
    while i < len(ordered):
        r = ordered[i]
        run = 1
        if isinstance(r.dest, str) and r.dest in _AREA_CODES:
            while (
                i + run < len(ordered)
                and ordered[i + run].dest == r.dest
                and ordered[i + run].in_rodata == r.in_rodata
                and ordered[i + run].word == r.word + run
            ):
                run += 1
        new_offset = cursor != (r.in_rodata, r.word)
        if isinstance(r.dest, tuple):
            code = 9 + r.dest[1]
        elif r.dest in _AREA_CODES:
            code = _AREA_CODES[r.dest] << 1 | (run > 1)
        else:
            code = {DEST_QSTR_TABLE: 6, DEST_OBJ_TABLE: 7, DEST_FUN_TABLE: 8}[r.dest]
        if code << 1 | 1 > 0xFE:
            raise ValueError(f"mp_fun_table index {code - 9} does not fit a relocation op")
        out.append(code << 1 | new_offset)
        if new_offset:
            out += vuint(r.word << 1 | r.in_rodata)
        if run > 1:
            out += vuint(run)
        cursor = (r.in_rodata, r.word + run)
        i += run
    out.append(0xFF)
    return bytes(out)


def write_mpy(mod: NativeModule) -> bytes:
    if mod.arch not in ARCHES:
        raise ValueError(f"unknown arch {mod.arch!r}")
    out = bytearray(b"M")
    out += bytes([MPY_VERSION, ARCHES[mod.arch] << 2 | MPY_SUB_VERSION, SMALL_INT_BITS])
    out += vuint(1 + len(mod.qstrs))
    out += vuint(0)
    out += _qstr_bytes(mod.source_name)
    for q in mod.qstrs:
        out += _qstr_bytes(q)
    out += vuint(len(mod.text) << 3 | CODE_KIND_VIPER)
    out += mod.text
    flags = (SCOPE_RELOC if mod.relocs else 0) | (SCOPE_RODATA if mod.rodata else 0)
    flags |= SCOPE_BSS if mod.bss_size else 0
    out += vuint(flags)
    if mod.rodata:
        out += vuint(len(mod.rodata))
    if mod.bss_size:
        out += vuint(mod.bss_size)
    out += mod.rodata
    if mod.relocs:
        out += encode_relocs(mod.relocs)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise MpyFormatError("truncated .mpy")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise MpyFormatError("truncated .mpy")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def vuint(self) -> int:
        value = 0
        while True:
            b = self.byte()
            value = value << 7 | (b & 0x7F)
            if not b & 0x80:
                return value

    def qstr(self) -> str | int:
        n = self.vuint()
        if n & 1:
            return n >> 1
        text = self.take(n >> 1).decode()
        if self.byte() != 0:
            raise MpyFormatError("qstr without its NUL terminator")
        return text


def read_mpy(data: bytes) -> NativeModule:
    r = _Reader(data)
    magic, version, feat, _small_int_bits = r.take(4)
    if magic != ord("M") or version != MPY_VERSION:
        raise MpyFormatError("not an .mpy v6 file")
    if feat & 3 != MPY_SUB_VERSION:
        raise MpyFormatError(f"sub-version {feat & 3}, expected {MPY_SUB_VERSION}")
    arch = ARCH_NAMES.get((feat >> 2) & 0x0F)
    if arch is None:
        raise MpyFormatError("not a native module (no arch)")
    if feat & 0x40:
        r.vuint()  # arch flags
    n_qstr = r.vuint()
    if r.vuint() != 0:
        raise MpyFormatError("constant objects are not supported")
    qstrs = [r.qstr() for _ in range(n_qstr)]
    kind_len = r.vuint()
    if kind_len & 7 != CODE_KIND_VIPER:
        raise MpyFormatError("the top-level raw code is not viper native code")
    text = r.take(kind_len >> 3)
    flags = r.vuint()
    rodata_size = r.vuint() if flags & SCOPE_RODATA else 0
    bss_size = r.vuint() if flags & SCOPE_BSS else 0
    rodata = r.take(rodata_size)
    relocs: list[Reloc] = []
    if flags & SCOPE_RELOC:
        where: tuple[bool, int] | None = None
        while (op := r.byte()) != 0xFF:
            if op & 1:
                addr = r.vuint()
                where = (bool(addr & 1), addr >> 1)
            if where is None:
                raise MpyFormatError("relocation before any offset")
            op >>= 1
            n = 1
            dest: Dest
            if op <= 5:
                if op & 1:
                    n = r.vuint()
                dest = _AREA_NAMES.get(op >> 1, "?")
                if dest == "?":
                    raise MpyFormatError(f"bad relocation destination {op >> 1}")
            elif op == 6:
                dest = DEST_QSTR_TABLE
            elif op == 7:
                dest = DEST_OBJ_TABLE
            elif op == 8:
                dest = DEST_FUN_TABLE
            else:
                dest = ("fun_entry", op - 9)
            for _ in range(n):
                relocs.append(Reloc(where[1], dest, where[0]))
                where = (where[0], where[1] + 1)
    if r.pos != len(data):
        raise MpyFormatError(f"{len(data) - r.pos} trailing bytes")
    source = qstrs[0]
    return NativeModule(
        arch=arch,
        source_name=source if isinstance(source, str) else f"<static {source}>",
        qstrs=qstrs[1:],
        text=text,
        bss_size=bss_size,
        rodata=rodata,
        relocs=relocs,
    )
