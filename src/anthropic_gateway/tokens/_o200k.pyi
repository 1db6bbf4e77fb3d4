# The C extension _o200k.c (built when a C compiler is available; see vocab.get_tokenizer).
UNICODE_VERSION: str
HEAP_FROM: int
MERGE_MAX: int
M_A: int
M_B: int
M_C: int
M_O: int
M_S: int
M_N: int
M_NL: int
M_ASSIGNED: int

class Table:
    def __init__(self, data: bytes) -> None: ...
    def count(self, text: str, /) -> int: ...
    def pieces(self, text: str, /) -> list[str]: ...
    def ranks(self) -> int: ...

def char_mask(cp: int, /) -> int: ...
def _set_heap_from(n: int, /) -> int: ...
