"""The shipped vocabularies: provenance, offline loading, known ids."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from anthropic_gateway.tokens import vocab


@pytest.mark.parametrize("name", sorted(vocab.ENCODINGS))
def test_shipped_file_is_exactly_openais_vocabulary(name: str) -> None:
    # Rebuilding the .tiktoken text and matching the SHA-256 tiktoken pins for the download proves
    # the shipped ranks are OpenAI's, token for token.
    ranks = vocab.load_ranks(name)
    assert hashlib.sha256(vocab.tiktoken_text(ranks)).hexdigest() == vocab.ENCODINGS[name].tiktoken_sha256


def test_layout_round_trips() -> None:
    ranks = {b"a": 0, b"b": 1, b"ab": 2, b"\x00\xff\n": 3}
    assert vocab.read_ranks(vocab.write_ranks(ranks)) == ranks


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(ValueError, match="trailing bytes"):
        vocab.read_ranks(vocab.write_ranks({b"a": 0}) + b"x")


def test_known_token_ids() -> None:
    assert vocab.get_encoding("o200k_base").encode_ordinary("hello world") == [24912, 2375]
    assert vocab.get_encoding("cl100k_base").encode_ordinary("hello world") == [15339, 1917]


_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import socket, sys

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    from anthropic_gateway.tokens import count_text_tokens
    print(count_text_tokens("hello world", "openai/gpt-4o"), count_text_tokens("hello world", "gpt-4"))
    print("requests" in sys.modules)
    """
)


def test_loads_with_the_network_unreachable_and_downloads_nothing(tmp_path: Path) -> None:
    env = dict(os.environ)
    # tiktoken's download cache: it must stay empty, proving nothing was fetched or cached.
    env["TIKTOKEN_CACHE_DIR"] = str(tmp_path)
    env["DATA_GYM_CACHE_DIR"] = str(tmp_path)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[proxy] = "http://127.0.0.1:9"
    result = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["2 2", "False"]
    assert result.stderr == ""
    assert list(tmp_path.iterdir()) == []
