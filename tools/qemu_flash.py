# A flash file system for MicroPython's ports/qemu firmware, which has none: files live in
# the emulated board's RAM outside the GC heap (machine.mem8 / mem32), so they cost the heap
# nothing, as a board's flash does not, and modules imported from them load into the heap
# as they do from a board's littlefs. Mounted at "/" by `mount()`; mpremote's `fs cp`,
# `exec` and imports see an ordinary file system (flat, with implied folders).
#
# This file runs on the emulated board (MicroPython); the host sends it with mpremote.

import io

import machine
import micropython

_M8 = machine.mem8


@micropython.viper
def _to_ram(addr: int, data, n: int):
    dst = ptr8(addr)  # noqa: F821 (viper built-in)
    src = ptr8(data)  # noqa: F821
    for i in range(n):
        dst[i] = src[i]


@micropython.viper
def _from_ram(buf, addr: int, n: int):
    dst = ptr8(buf)  # noqa: F821
    src = ptr8(addr)  # noqa: F821
    for i in range(n):
        dst[i] = src[i]


class _File(io.IOBase):
    def __init__(self, fs, name, addr, size, writing, text):
        self._fs = fs
        self._name = name
        self._addr = addr
        self._size = size
        self._pos = 0
        self._writing = writing
        self._text = text

    def readinto(self, buf):
        n = min(len(buf), self._size - self._pos)
        _from_ram(buf, self._addr + self._pos, n)
        self._pos += n
        return n

    def read(self, n=-1):
        left = self._size - self._pos
        if n is None or n < 0 or n > left:
            n = left
        buf = bytearray(n)
        self.readinto(buf)
        return buf.decode() if self._text else bytes(buf)

    def readline(self):
        out = bytearray()
        while self._pos < self._size:
            byte = _M8[self._addr + self._pos]
            self._pos += 1
            out.append(byte)
            if byte == 10:
                break
        return out.decode() if self._text else bytes(out)

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        at = self._addr + self._size
        if at + len(data) > self._fs.end:
            raise OSError(28)  # ENOSPC
        _to_ram(at, data, len(data))
        self._size += len(data)
        self._fs.top = at + len(data)
        return len(data)

    def ioctl(self, request, arg):
        if request == 4:  # MP_STREAM_CLOSE
            self.close()
        return 0

    def close(self):
        if self._writing:
            self._writing = False
            self._fs.files[self._name] = (self._addr, self._size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Flash:
    def __init__(self, base, size):
        self.base = base
        self.end = base + size
        self.top = base
        self.files = {}
        self.cwd = ""

    def _key(self, path):
        if not path.startswith("/"):
            path = self.cwd + "/" + path
        parts = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        return "/".join(parts)

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def _is_dir(self, key):
        if not key:
            return True
        prefix = key + "/"
        for name in self.files:
            if name.startswith(prefix):
                return True
        return key in self.dirs()

    def dirs(self):
        return self.files.get("\0dirs", ())

    def stat(self, path):
        key = self._key(path)
        if key in self.files and key != "\0dirs":
            return (0x8000, 0, 0, 0, 0, 0, self.files[key][1], 0, 0, 0)
        if self._is_dir(key):
            return (0x4000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        raise OSError(2)  # ENOENT

    def ilistdir(self, path):
        key = self._key(path)
        prefix = key + "/" if key else ""
        seen = []
        for name in list(self.files) + list(self.dirs()):
            if name == "\0dirs" or not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            child = rest.split("/")[0]
            if child in seen:
                continue
            seen.append(child)
            if "/" in rest or (prefix + child) in self.dirs():
                yield (child, 0x4000, 0, 0)
            else:
                yield (child, 0x8000, 0, self.files[name][1])

    def open(self, path, mode):
        key = self._key(path)
        text = "b" not in mode
        if "w" in mode:
            return _File(self, key, self.top, 0, True, text)
        if key not in self.files:
            raise OSError(2)
        addr, size = self.files[key]
        return _File(self, key, addr, size, False, text)

    def remove(self, path):
        key = self._key(path)
        if key not in self.files:
            raise OSError(2)
        del self.files[key]

    def rename(self, old, new):
        self.files[self._key(new)] = self.files.pop(self._key(old))

    def mkdir(self, path):
        key = self._key(path)
        self.files["\0dirs"] = tuple(self.dirs()) + (key,)

    def rmdir(self, path):
        key = self._key(path)
        self.files["\0dirs"] = tuple(d for d in self.dirs() if d != key)

    def chdir(self, path):
        key = self._key(path)
        if not self._is_dir(key):
            raise OSError(2)
        self.cwd = "/" + key if key else ""

    def getcwd(self):
        return self.cwd or "/"

    def statvfs(self, path):
        free = (self.end - self.top) // 512
        return (512, 512, (self.end - self.base) // 512, free, free, 0, 0, 0, 0, 255)


def mount(base=0x00300000, size=0x00080000):
    import os

    fs = Flash(base, size)
    os.mount(fs, "/")
    os.chdir("/")
    return fs
