"""The cluster key file, read the same way by every command and by the cluster file.

Format (docs/deploy.md, "The key file"): if the file, with all ASCII whitespace removed, is
an even number of hex digits, the key is those digits decoded; anything else is the key as
raw bytes, exactly as stored. Either way the key must be at least `MIN_KEY_BYTES` long.
`microswarm keygen FILE` writes 32 random bytes as hex text, readable by its owner only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MIN_KEY_BYTES = 16
KEYGEN_BYTES = 32
DEFAULT_CLUSTER = "microswarm"  # the cluster name every command uses unless told otherwise

_HEX = re.compile(rb"(?:[0-9a-fA-F]{2})+")
_SPACE = re.compile(rb"[ \t\r\n\v\f]+")


class KeyFileError(ValueError):
    """A key file that cannot be read or holds too short a key."""


def parse_key(data: bytes, source: str = "the key") -> bytes:
    """The key a key file's bytes hold (hex text or raw bytes), at least 16 bytes long."""
    compact = _SPACE.sub(b"", data)
    if compact and _HEX.fullmatch(compact):
        key, form = bytes.fromhex(compact.decode("ascii")), f"{len(compact)} hex digits"
    else:
        key, form = bytes(data), "raw bytes"
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(
            f"{source} holds a {len(key)}-byte key ({form}); a cluster key must be at least "
            f"{MIN_KEY_BYTES} bytes ({2 * MIN_KEY_BYTES} hex digits): "
            "make one with `microswarm keygen FILE`")
    return key


def read_key(path: str | os.PathLike[str]) -> bytes:
    """Read and check a key file; KeyFileError names the file and what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    return parse_key(data, f"the key file {path}")


def write_new_key(path: str | os.PathLike[str], *, force: bool = False) -> bytes:
    """Write a fresh random key as hex text to `path`, mode 0600; refuse to overwrite an
    existing file unless `force`. Returns the key."""
    key = os.urandom(KEYGEN_BYTES)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists: keep it, or pass --force to replace it") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file replaced with --force
        out.write(key.hex() + "\n")
    return key
