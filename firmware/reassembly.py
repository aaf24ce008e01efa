"""CHUNK reassembly for the codec's users (frame.py's; the host's tests of the firmware
codec): engine_chunks.Chunks, which the node imports on a link's first CHUNK, with the
message's byte strings copied out of its buffer by default. Its interface and errors:
engine_chunks.py."""

try:
    import engine_chunks
except ImportError:  # on the host: microswarm.firmware
    from microswarm.firmware import engine_chunks


class Reassembler(engine_chunks.Chunks):
    def __init__(self, max_message, copy=True, count=4):
        super().__init__(max_message, count, copy)
