"""The optional C extension (src/anthropic_gateway/tokens/_o200k.c): exact o200k token counts from a
compact rank table. Everything else is in pyproject.toml. Without a C compiler (or Python's headers)
the build warns and goes on; the gateway then counts with tiktoken."""

from setuptools import Extension, setup

TOKENS = "src/anthropic_gateway/tokens"

setup(
    ext_modules=[
        Extension(
            "anthropic_gateway.tokens._o200k",
            sources=[f"{TOKENS}/_o200k.c"],
            depends=[f"{TOKENS}/_o200k_scan.h", f"{TOKENS}/_o200k_unicode.h"],
            optional=True,
        )
    ]
)
