# The firmware's error texts, by number. A module that raises one names it as _TX_NAME
# (a const() that tools/gen_protocol.py writes into that module's generated block: its
# number here, no name and no text in the module); cbor.text() renders it, with its format
# arguments, importing this module only then and (on MicroPython) dropping it again, so a
# healthy node never holds these texts. One text a line: "text",  # NAME. The numbers are
# the lines' order: add at the end or anywhere (`make vectors` renumbers every user).
# On the wire, in ERROR and LOG payloads, a text is exactly what it was when it was a
# literal at its raise site (tests/firmware/test_msw_texts.py holds the old literals).

# BEGIN: texts
T = (
    "nesting deeper than %d",  # CBOR_DEEP
    "integer out of 64-bit range",  # CBOR_INT_RANGE
    "cannot encode %s",  # CBOR_CANNOT_ENCODE
    "no typed-array tag for typecode %r",  # CBOR_NO_TAG
    "map keys must be int or str",  # CBOR_KEYS
    "indefinite length not allowed",  # CBOR_INDEFINITE
    "reserved additional information %d",  # CBOR_RESERVED
    "truncated head",  # CBOR_TRUNCATED_HEAD
    "truncated input",  # CBOR_TRUNCATED
    "string length %d past end of input",  # CBOR_STRING_PAST
    "invalid UTF-8 in text string",  # CBOR_UTF8
    "array length %d past end of input",  # CBOR_ARRAY_PAST
    "map length %d past end of input",  # CBOR_MAP_PAST
    "map key must be int or text",  # CBOR_KEY
    "duplicate map key",  # CBOR_DUPLICATE
    "truncated float%d",  # CBOR_TRUNCATED_FLOAT
    "unexpected break / indefinite length",  # CBOR_BREAK
    "unsupported simple value (additional information %d)",  # CBOR_SIMPLE
    "unsupported tag %d",  # CBOR_TAG
    "truncated typed array",  # CBOR_TRUNCATED_TYPED
    "typed array tag %d must wrap a byte string",  # CBOR_TYPED_WRAP
    "typed array length %d past end of input",  # CBOR_TYPED_PAST
    "typed array of %d bytes is not a whole number of items",  # CBOR_TYPED_ITEMS
    "bad input bounds",  # CBOR_BOUNDS
    "empty input",  # CBOR_EMPTY
    "%d trailing bytes",  # CBOR_TRAILING
    "message type %d is not known",  # FRAME_UNKNOWN_TYPE
    "payload of type %d must be a map",  # FRAME_NOT_MAP
    "type %d lacks required field %d",  # FRAME_LACKS
    "type %d field %d has the wrong kind",  # FRAME_WRONG_KIND
    "protocol version %d, expected %d",  # FRAME_VERSION
    "frame of %d bytes over the limit of %d",  # FRAME_OVER
    "CRC-32 mismatch",  # FRAME_CRC
    "flags 0x%02x not allowed on type %d",  # FRAME_FLAGS
    "MAC before the join",  # FRAME_MAC_BEFORE
    "bad CBOR: %s",  # FRAME_BAD_CBOR
    "payload does not fit in the heap",  # FRAME_NO_HEAP
    "%d bytes is shorter than any frame",  # FRAME_SHORT
    "frame is %d bytes, its header says %d",  # FRAME_SIZE
    "cannot encode payload: %s",  # FRAME_CANNOT_ENCODE
    "message of %d bytes over the peer's limit of %d",  # FRAME_PEER_LIMIT
    "a CHUNK cannot itself be chunked",  # FRAME_CHUNK_CHUNKED
    "serial frame over the limit",  # SERIAL_OVER
    "bad COBS: %s",  # SERIAL_BAD_COBS
    "authenticated frame before the join",  # AUTH_BEFORE_JOIN
    "frame without a MAC after the join",  # AUTH_NO_MAC
    "MAC mismatch: forged or altered frame",  # AUTH_MISMATCH
    "replayed or reordered frame",  # AUTH_REPLAYED
    "a node does not accept message type %d",  # ENGINE_NOT_ACCEPTED
    "master said bye: %s",  # ENGINE_BYE
    "unrecoverable frame: %s",  # ENGINE_UNRECOVERABLE
    "master refused the join: %s",  # ENGINE_REFUSED
    "master error %d: %s",  # ENGINE_MASTER_ERROR
    "previous session ended: %s",  # ENGINE_PREVIOUS
    "no WELCOME within %d ms",  # ENGINE_NO_WELCOME
    "master silent for %d ms",  # ENGINE_SILENT
    "TASK before WELCOME",  # ENGINE_TASK_EARLY
    "PUT before WELCOME",  # ENGINE_PUT_EARLY
    "CHUNK before WELCOME",  # ENGINE_CHUNK_EARLY
    "all slots taken",  # ENGINE_SLOTS
    "no kernel named %s",  # ENGINE_NO_KERNEL
    "this node keeps no operands",  # ENGINE_NO_OPERANDS
    "no heap to load %s",  # ENGINE_NO_HEAP_LOAD
    "ValueError: %s",  # ENGINE_BAD_ARGS
    "cancelled before it ran",  # ENGINE_CANCELLED_QUEUED
    "cancelled while waiting for operands",  # ENGINE_CANCELLED_WAITING
    "cancelled while running",  # ENGINE_CANCELLED_RUNNING
    "no heap to encode the result",  # ENGINE_NO_HEAP_RESULT
    "result not sendable: %s",  # ENGINE_NOT_SENDABLE
    "max_frame must be in %d..%d",  # FRAME_MAX_FRAME
    "malformed COBS block",  # COBS_MALFORMED
    "COBS frame longer than the buffer",  # COBS_LONG
    "empty COBS frame or zero byte inside",  # COBS_EMPTY
    "frame counter exhausted: join again",  # AUTH_EXHAUSTED
    "%s takes %d arguments (%s), got %d",  # KERNEL_TAKES
    "%s: argument %s must be %s, got %s",  # KERNEL_ARG
)
# END
