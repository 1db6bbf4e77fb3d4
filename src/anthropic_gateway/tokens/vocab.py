"""Offline BPE vocabularies: the shipped files, their loading, and the tokenizer objects built on them.

The vocabularies are OpenAI's ``o200k_base`` and ``cl100k_base`` (tiktoken, MIT licence), shipped in
``anthropic_gateway/data/*.bpe`` in a compact binary layout because tiktoken's own loader would fetch
``*.tiktoken`` files from a host that CI and many users cannot reach. The layout is exactly the merge
ranks, nothing derived: ``tests/tokens/test_vocab.py`` rebuilds the original ``.tiktoken`` text from
it and checks the SHA-256 that tiktoken itself pins for the download.

Layout (little-endian)::

    u32 group_count
    group_count × { u32 token_length L, u32 count C, C × u32 rank, C × L bytes tokens }

Tokens are grouped by length so a whole group splits into ``bytes`` objects in one C-level
``struct.unpack_from`` call; this loads in about a quarter of the time of parsing base64 lines.

Regenerate a file from a ``.tiktoken`` download with
``python -m anthropic_gateway.tokens.vocab SRC.tiktoken OUT.bpe``.

Counting: :func:`get_tokenizer` gives each vocabulary's count of ordinary text. ``o200k_base`` counts
with the C extension ``_o200k`` when it was built (``_o200k.c``: the same counts as tiktoken from a
~4 MB rank table, where tiktoken's core is ~42 MB), else with tiktoken; ``cl100k_base`` always with
tiktoken. A gateway that counts only o200k never imports tiktoken.
"""

from __future__ import annotations

import array
import base64
import gc
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from anthropic_gateway import heap

if TYPE_CHECKING:
    import tiktoken

    from anthropic_gateway.tokens import _o200k

# The split patterns are part of each encoding's definition; copied from tiktoken_ext/openai_public.py.
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    name: str
    filename: str
    pattern: str
    # SHA-256 of the original ``.tiktoken`` file, as pinned in tiktoken_ext/openai_public.py.
    tiktoken_sha256: str


ENCODINGS: dict[str, EncodingSpec] = {
    "o200k_base": EncodingSpec(
        "o200k_base", "o200k_base.bpe", _O200K_PATTERN,
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": EncodingSpec(
        "cl100k_base", "cl100k_base.bpe", _CL100K_PATTERN,
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}  # fmt: skip

_HEADER = struct.Struct("<II")


def read_ranks(data: bytes) -> dict[bytes, int]:
    """Decode the shipped layout into tiktoken's ``mergeable_ranks`` mapping.

    The headers are read first; then every token is cut out by one ``struct`` call and the dict is
    built by one more, so the ~400,000 small objects are allocated back to back rather than
    interleaved with whatever another thread allocates meanwhile (the server's start-up runs other
    imports in parallel). Interleaved, the live objects of the other thread kept ~10 MB of
    Python's arenas from being returned once the dict was dropped.
    """
    (groups,) = struct.unpack_from("<I", data, 0)
    offset = 4
    rank_parts: list[bytes] = []
    token_parts: list[bytes] = []
    layout = ["<"]
    for _ in range(groups):
        length, count = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        rank_parts.append(data[offset : offset + 4 * count])
        offset += 4 * count
        token_parts.append(data[offset : offset + length * count])
        layout.append(f"{length}s" * count)
        offset += length * count
    if offset != len(data):
        raise ValueError("vocabulary file has trailing bytes; it is corrupt or of another layout")
    ranks = array.array("I")
    ranks.frombytes(b"".join(rank_parts))
    if sys.byteorder != "little":
        ranks.byteswap()
    tokens = struct.Struct("".join(layout)).unpack(b"".join(token_parts))
    return dict(zip(tokens, ranks, strict=True))


def write_ranks(ranks: dict[bytes, int]) -> bytes:
    by_length: dict[int, list[tuple[bytes, int]]] = {}
    for token, rank in ranks.items():
        by_length.setdefault(len(token), []).append((token, rank))
    parts = [struct.pack("<I", len(by_length))]
    for length in sorted(by_length):
        group = sorted(by_length[length], key=lambda item: item[1])
        group_ranks = array.array("I", [rank for _, rank in group])
        if sys.byteorder != "little":
            group_ranks.byteswap()
        parts += [_HEADER.pack(length, len(group)), group_ranks.tobytes(), b"".join(t for t, _ in group)]
    return b"".join(parts)


def tiktoken_text(ranks: dict[bytes, int]) -> bytes:
    """The ``.tiktoken`` file these ranks came from, byte for byte (used to verify provenance)."""
    ordered = sorted(ranks.items(), key=lambda item: item[1])
    return b"".join(base64.b64encode(token) + b" " + str(rank).encode() + b"\n" for token, rank in ordered)


def read_file(name: str) -> bytes:
    return resources.files("anthropic_gateway").joinpath("data", ENCODINGS[name].filename).read_bytes()


def load_ranks(name: str) -> dict[bytes, int]:
    return read_ranks(read_file(name))


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """How one vocabulary counts ordinary text (no special tokens)."""

    name: str
    count: Callable[[str], int]
    # Whether ``count`` takes a text of any length in one call; otherwise a long text is counted in
    # pieces (tiktoken's core overflowed its stack on a million spaces, and its merge is quadratic).
    whole: bool


_lock = threading.Lock()
_encoding_lock = threading.Lock()  # taken inside _lock by tiktoken_tokenizer
_loaded: dict[str, tiktoken.Encoding] = {}
_tokenizers: dict[str, Tokenizer] = {}


def _release_heap() -> None:
    gc.collect()
    heap.trim()  # not glibc: nothing to trim, and the freed memory is reused by later allocations


def is_loaded(name: str) -> bool:
    return name in _tokenizers


def extension() -> type[_o200k.Table] | None:
    """The compiled o200k counter's table, or None when the package was installed without a C compiler."""
    try:
        from anthropic_gateway.tokens import _o200k
    except ImportError:
        return None
    return _o200k.Table


NO_EXTENSION = (
    "the compiled o200k counter (tokens/_o200k.c) is not built: token counts use tiktoken, "
    "idle memory ~96 MB instead of ~55 MB; reinstall with a C compiler and Python headers"
)


def counter_state() -> str | None:
    """None when o200k counts with the compiled counter, else what to tell the operator (serve logs
    it at start-up, ``check`` prints it). Imports the extension, never tiktoken."""
    return None if extension() is not None else NO_EXTENSION


def get_tokenizer(name: str) -> Tokenizer:
    """The counter for ``name``, built on first use from the shipped file; never touches the network."""
    tokenizer = _tokenizers.get(name)
    if tokenizer is not None:
        return tokenizer
    with _lock:
        tokenizer = _tokenizers.get(name)
        if tokenizer is None:
            ext = extension() if name == "o200k_base" else None
            if ext is not None:
                # The file's bytes are dropped once the table is built (the GIL released meanwhile);
                # no Python objects are made, so no collection is needed, only the heap trimmed.
                tokenizer = Tokenizer(name, ext(read_file(name)).count, whole=True)
                heap.trim()
            else:
                tokenizer = tiktoken_tokenizer(name)
            _tokenizers[name] = tokenizer
    return tokenizer


def tiktoken_tokenizer(name: str) -> Tokenizer:
    enc = get_encoding(name)

    def count(text: str) -> int:
        try:
            return len(enc.encode_ordinary(text))
        except BaseException as err:  # pyo3 panics are BaseExceptions; an estimate beats a failed request
            if isinstance(err, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            return len(text) // 4 + 1

    return Tokenizer(name, count, whole=False)


def get_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's encoding for ``name``, built on first use from the shipped file; never touches the
    network. The gateway counts with :func:`get_tokenizer`; this is also the tests' reference.

    tiktoken is imported here, not at module import, so that importing the gateway stays fast.
    """
    enc = _loaded.get(name)
    if enc is not None:
        return enc
    with _encoding_lock:
        enc = _loaded.get(name)
        if enc is None:
            import tiktoken

            spec = ENCODINGS[name]
            # No special tokens: client text such as "<|endoftext|>" is ordinary text to count.
            enc = tiktoken.Encoding(
                spec.name, pat_str=spec.pattern, mergeable_ranks=load_ranks(name), special_tokens={}
            )
            # The Rust core keeps its own copy of the vocabulary; the Python dict (about 25 MB for
            # o200k) is only needed to build it, so it is released and the heap handed back.
            enc._mergeable_ranks = {}
            _release_heap()
            _loaded[name] = enc
    return enc


def _main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m anthropic_gateway.tokens.vocab SRC.tiktoken OUT.bpe", file=sys.stderr)
        return 2
    src, out = argv
    ranks: dict[bytes, int] = {}
    with open(src, "rb") as fh:
        for line in fh:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    with open(out, "wb") as fh:
        fh.write(write_ranks(ranks))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
