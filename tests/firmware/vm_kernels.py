# Runs inside the MicroPython VM: reads kernel calls as JSON lines on stdin, prints one
# JSON result line per call and mode (native, then pure Python). Arrays and floats travel
# as hex of their bytes, so the comparison on the host side is bit for bit.
import array
import json
import struct
import sys

import kernels
import msw_boot


def load(v):
    if isinstance(v, dict):
        if "$a" in v:
            return array.array(v["$a"], bytes.fromhex(v["hex"]))
        if "$b" in v:
            return bytes.fromhex(v["$b"])
        if "$f" in v:
            return struct.unpack("<d", bytes.fromhex(v["$f"]))[0]
    if isinstance(v, list):
        return [load(x) for x in v]
    return v


def dump(v):
    if isinstance(v, array.array):
        return {"$a": repr(v[:0])[7], "hex": bytes(v).hex()}
    if isinstance(v, (bytes, bytearray)):
        return {"$b": bytes(v).hex()}
    if isinstance(v, float):
        return {"$f": struct.pack("<d", v).hex()}
    if isinstance(v, list):
        return [dump(x) for x in v]
    return v


calls = [json.loads(line) for line in sys.stdin]
# every call twice: through the native module where it serves the kernel, then pure Python
for native in (True, False):
    kernels.set_native(native)
    for call in calls:
        try:
            out = {"ok": dump(kernels.run(call["k"], load(call["args"])))}
        except Exception as exc:
            out = {"err": type(exc).__name__}
        print(json.dumps(out))
kernels.set_native(True)
print(json.dumps({"names": kernels.builtin_names(), "native": msw_boot.native_names()}))
