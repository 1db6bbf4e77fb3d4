class Reader:
    """One chunked body's reader, from right after the headers (see _chunks.c)."""

    @property
    def tail(self) -> bytes | None: ...
    def feed(self, data: bytes, start: int = 0, /) -> list[bytes]: ...

INTERFACE: int
