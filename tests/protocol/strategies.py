"""Hypothesis strategies for payloads of the protocol's data model."""

from __future__ import annotations

import array

from hypothesis import strategies as st

from microswarm.protocol.catalog import CATALOG, MAX_NESTING, TYPED_ARRAY_TAGS

_ITEMS = {
    "B": st.integers(0, 2**8 - 1), "H": st.integers(0, 2**16 - 1),
    "I": st.integers(0, 2**32 - 1), "Q": st.integers(0, 2**64 - 1),
    "b": st.integers(-(2**7), 2**7 - 1), "h": st.integers(-(2**15), 2**15 - 1),
    "i": st.integers(-(2**31), 2**31 - 1), "q": st.integers(-(2**63), 2**63 - 1),
    "f": st.floats(width=32), "d": st.floats(),
}
assert set(_ITEMS) == {code for code, _size in TYPED_ARRAY_TAGS.values()}

typed_arrays = st.sampled_from(sorted(_ITEMS)).flatmap(
    lambda code: st.lists(_ITEMS[code], max_size=12).map(lambda xs: array.array(code, xs))
)
scalars = (
    st.integers(-(2**64), 2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=24)
    | st.booleans()
    | st.none()
    | typed_arrays
)
keys = st.integers(0, 2**32) | st.text(max_size=6)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16,
).filter(lambda v: _depth(v) < MAX_NESTING - 1)

_KINDS = {
    "uint": st.integers(0, 2**64 - 1),
    "int": st.integers(-(2**64), 2**64 - 1),
    "tstr": st.text(max_size=16),
    "bstr": st.binary(max_size=32),
    "bool": st.booleans(),
    "float": st.floats(),
    "any": values,
    "array": st.lists(values, max_size=4),
    "tstr[]": st.lists(st.text(max_size=8), max_size=4),
    "map": st.dictionaries(keys, values, max_size=4),
}


def payload_for(msg_type: int) -> st.SearchStrategy[dict]:
    fields = CATALOG[msg_type].fields
    required = {f.key: _KINDS[f.kind] for f in fields if f.required}
    optional = {f.key: _KINDS[f.kind] for f in fields if not f.required}
    unknown = st.dictionaries(st.integers(100, 200), values, max_size=2)
    return st.tuples(st.fixed_dictionaries(required, optional=optional), unknown).map(
        lambda parts: {**parts[1], **parts[0]}
    )


messages = st.sampled_from(sorted(CATALOG)).flatmap(
    lambda t: st.tuples(st.just(int(t)), payload_for(t), st.integers(0, 65535))
)
