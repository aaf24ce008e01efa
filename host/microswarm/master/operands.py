"""Shared operands, the master's side (SPEC.md section 6, "Shared operands").

``Shared(value)`` marks an argument that many tasks of a job take: the master sends it to
each node once (PUT) and its tasks refer to it by hash (TASK ``refs``)::

    b = Shared(matrix)
    await master.run("matmul", [[rows, b, h, k, n] for rows, h in blocks])

The value is encoded (deterministic CBOR) and hashed when it is wrapped: what the nodes
compute with is the value as it was then, whatever happens to the object later, and other
content is another hash. A node that offers no cache (HELLO ``operand_cache`` absent or 0),
or too small a one, gets the value inside the TASK as any argument.

``NodeOperands`` is one session's view of its node's cache: which TASK goes out with which
PUTs, what a NEED is answered with, and what the node's HEARTBEAT says it holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from microswarm.protocol.catalog import OPERAND_HASH_SIZE
from microswarm.wire import decode_payload, encode_payload

REF_SIZE = OPERAND_HASH_SIZE + 4  # what a reference costs in a TASK (map entry + bstr head)
KEEP = 256  # operands a session remembers for NEEDs beyond those its node holds


class Shared:
    """An argument sent to each node once and referred to by its content hash."""

    __slots__ = ("value", "data", "hash")

    def __init__(self, value: Any) -> None:
        if isinstance(value, Shared):
            value = value.value
        self.data = encode_payload(value)  # raises TypeError/ValueError if not encodable
        self.hash = hashlib.sha256(self.data).digest()[:OPERAND_HASH_SIZE]
        self.value = decode_payload(self.data)  # the snapshot the nodes see

    @classmethod
    def encoded(cls, data: bytes) -> Shared:
        """The operand whose CBOR encoding is `data` (as a client sends it)."""
        return cls(decode_payload(data))

    @property
    def size(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Shared({self.hash.hex()[:12]}, {self.size} bytes)"


def operands_of(args: Sequence[Any]) -> tuple[Shared, ...]:
    """The shared operands among a task's arguments."""
    return tuple(a for a in args if type(a) is Shared)


def pack_job(tasks: list[list[Any]]) -> tuple[list[list[Any]], list[bytes], list[list[int]]]:
    """A job's argument lists for the client port: each shared operand once (its
    encoding), and [task, argument, operand] for every place it goes (null there)."""
    index: dict[bytes, int] = {}
    operands: list[bytes] = []
    places: list[list[int]] = []
    out = []
    for t, args in enumerate(tasks):
        if Shared in map(type, args):
            args = list(args)
            for i, a in enumerate(args):
                if type(a) is Shared:
                    if a.hash not in index:
                        index[a.hash] = len(operands)
                        operands.append(a.data)
                    places.append([t, i, index[a.hash]])
                    args[i] = None
        out.append(args)
    return out, operands, places


def unpack_job(tasks: list[list[Any]], operands: Sequence[bytes],
               places: Sequence[Sequence[int]]) -> list[list[Any]]:
    """pack_job's inverse, at the master (ValueError for a place outside the job)."""
    if not all(isinstance(d, bytes | bytearray) for d in operands):
        raise ValueError("shared operands must be byte strings (their CBOR encoding)")
    shared = [Shared.encoded(bytes(d)) for d in operands]
    for t, i, o in places:
        if not (0 <= t < len(tasks) and 0 <= i < len(tasks[t]) and 0 <= o < len(shared)):
            raise ValueError(f"shared operand place {[t, i, o]} is outside the job")
        tasks[t][i] = shared[o]
    return tasks


def inline(args: Sequence[Any]) -> list[Any]:
    """The arguments with every shared operand's value in place (no reference)."""
    return [a.value if type(a) is Shared else a for a in args]


class NodeOperands:
    """What one node holds, as far as its session knows: the hashes it PUT there (and
    when), corrected by the node's HEARTBEATs."""

    __slots__ = ("capacity", "held", "known", "changed")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity  # HELLO operand_cache
        self.held: dict[bytes, float] = {}  # hash -> when it was PUT (or first listed)
        self.known: dict[bytes, Shared] = {}  # what a NEED may ask for
        self.changed = False  # held's hashes changed since the scheduler last read them

    def prepare(self, args: Sequence[Any], now: float
                ) -> tuple[list[Any], dict[int, bytes] | None, list[Shared]]:
        """TASK args with references, the refs map and the operands to PUT first. An
        operand larger than the node's cache goes inline."""
        out = list(args)
        refs: dict[int, bytes] = {}
        puts: list[Shared] = []
        for i, a in enumerate(out):
            if type(a) is not Shared:
                continue
            if a.size > self.capacity:
                out[i] = a.value
                continue
            out[i] = None
            refs[i] = a.hash
            if a.hash not in self.held:  # the time of the PUT, not of each reference:
                puts.append(a)  # a HEARTBEAT that no longer lists it is believed
                self.changed = True
                self.held[a.hash] = now
            self.known[a.hash] = a
        if len(self.known) > KEEP:
            for h in [h for h in self.known if h not in self.held][: len(self.known) - KEEP]:
                del self.known[h]
        return out, refs or None, puts

    def need(self, hashes: Sequence[bytes], now: float) -> list[Shared]:
        """The operands a NEED asks for that this session can send."""
        out = []
        for h in hashes:
            shared = self.known.get(bytes(h))
            if shared is not None:
                out.append(shared)
                self.changed |= shared.hash not in self.held
                self.held[shared.hash] = now
        return out

    def heartbeat(self, hashes: Sequence[bytes], now: float, grace_s: float) -> None:
        """The node says what it holds: forget what it no longer has, except what was PUT
        within `grace_s` (that PUT may have crossed the HEARTBEAT on the wire)."""
        listed = {bytes(h) for h in hashes}
        held = {h: t for h, t in self.held.items() if h in listed or t > now - grace_s}
        for h in listed:
            held.setdefault(h, now)
        self.changed |= held.keys() != self.held.keys()
        self.held = held

    def take_changes(self) -> dict[bytes, float] | None:
        """The hashes held, if they changed since the last call (for the scheduler)."""
        if not self.changed:
            return None
        self.changed = False
        return self.held
