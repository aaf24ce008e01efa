"""SPEC.md stays in step with the catalog, the codecs and the vector files."""

from __future__ import annotations

import json
import re

from microswarm import paths, wire
from microswarm.protocol import catalog as c
from microswarm.protocol import frame as ref

SPEC = (paths.protocol_dir() / "SPEC.md").read_text()
SECTIONS = re.findall(r"^## \d+\. (.+)$", SPEC, flags=re.M)


def section(title: str) -> str:
    start = SPEC.index(f". {title}\n")
    end = SPEC.find("\n## ", start)
    return SPEC[start : end if end > 0 else None]


def test_every_required_topic_has_a_section():
    for topic in (
        "Links and framing",
        "Frame",
        "Payload encoding (deterministic CBOR)",
        "Messages",
        "Joining and authentication",
        "Tasks, credits and heartbeats",
        "Chunking",
        "Errors",
        "Discovery",
        "Versioning",
        "Golden vectors",
    ):
        assert topic in SECTIONS


def test_generated_tables_name_every_type_field_code_and_tag():
    for name in ("header", "constants", "messages", "errors", "typed-arrays"):
        block = re.search(
            rf"<!-- BEGIN GENERATED: {name} -->\n(.+?)<!-- END GENERATED", SPEC, flags=re.S
        )
        assert block and block.group(1).count("|") > 10, name
    messages = section("Messages")
    for msg in c.CATALOG.values():
        assert f"| {int(msg.type)} | {msg.type.name} |" in messages
        for field in msg.fields:
            assert f"| {field.key} | {field.name} | {field.kind} |" in messages
    for code in c.ErrorCode:
        assert f"| {int(code)} | {code.name} |" in section("Errors")
    for tag, (typecode, _size) in c.TYPED_ARRAY_TAGS.items():
        assert f"| {tag} | {ref.TYPED_NAMES[tag]} (little-endian) | `{typecode}` |" in SPEC


def test_numbers_in_the_prose_match_the_catalog():
    assert f"port {c.TCP_PORT}" in SPEC and f"port {c.UDP_DISCOVERY_PORT}" in SPEC
    assert f"MAX_NESTING ({c.MAX_NESTING})" in SPEC
    assert f"max_frame - {c.FRAME_OVERHEAD} - len(CBOR(" in section("Chunking")
    assert f"at least {c.FRAME_OVERHEAD} bytes" in SPEC
    assert f"`version` is {c.PROTOCOL_VERSION}" in SPEC


def test_the_chunk_size_rule_in_the_prose_is_the_one_the_codec_uses():
    for max_frame, stream, total in ((64, 0, 1000), (1024, 65535, 70000), (300, 7, 256)):
        empty = {0: stream, 1: 5, 2: total, 3: total, 4: b""}
        room = max_frame - c.FRAME_OVERHEAD - len(ref.cbor_encode(empty)) - 2
        assert wire.chunks.chunk_room(max_frame, stream, 5, total) == room
        assert ref.chunk_payload_room(max_frame, stream, 5, total) == room


def test_the_check_order_in_the_prose_is_the_one_the_codecs_use():
    steps = re.sub(r"\n   ", " ", section("Frame"))  # join the wrapped list items
    listed = re.findall(r"^\d\. .+? — ([A-Z_]+)$", steps, flags=re.M)
    assert listed == [
        "TRUNCATED",
        "BAD_VERSION",
        "TOO_LARGE",
        "TRUNCATED",
        "BAD_CRC",
        "BAD_FLAGS",
        "BAD_MAC",
        "UNKNOWN_TYPE",
        "BAD_PAYLOAD",
    ]
    assert re.findall(r"else ([A-Z_]+)", ref.__doc__) == listed


def test_every_field_of_every_vector_file_is_documented():
    documented = set(re.findall(r"`([a-z_]+)`", section("Golden vectors")))
    for path in (paths.protocol_dir() / "vectors").glob("*.json"):
        assert f"`{path.name}`" in SPEC, path.name
        data = json.loads(path.read_text())
        keys = set(data)
        for vector in data.get("vectors", []) + data.get("frames", []):
            keys |= set(vector)
        assert keys <= documented | {"about", "vectors"}, (path.name, keys - documented)
