"""The optional C extensions: src/anthropic_gateway/tokens/_o200k.c (exact o200k token counts from a
compact rank table) and src/anthropic_gateway/httpclient/_chunks.c (the upstream's chunked body cut
per socket read) and src/anthropic_gateway/translate/_run.c (a read's run of plain text events to
text_deltas). Everything else is in pyproject.toml. Without a C compiler (or Python's headers) the
build warns and goes on; the gateway then counts with tiktoken, reads every chunk through httptools
and builds the run in Python."""

from setuptools import Extension, setup

TOKENS = "src/anthropic_gateway/tokens"
HTTPCLIENT = "src/anthropic_gateway/httpclient"
TRANSLATE = "src/anthropic_gateway/translate"

setup(
    ext_modules=[
        Extension(
            "anthropic_gateway.tokens._o200k",
            sources=[f"{TOKENS}/_o200k.c"],
            depends=[f"{TOKENS}/_o200k_scan.h", f"{TOKENS}/_o200k_unicode.h"],
            optional=True,
        ),
        Extension("anthropic_gateway.httpclient._chunks", sources=[f"{HTTPCLIENT}/_chunks.c"], optional=True),
        Extension("anthropic_gateway.translate._run", sources=[f"{TRANSLATE}/_run.c"], optional=True),
    ]
)
