"""The optional C extensions: src/anthropic_gateway/tokens/_o200k.c (exact o200k token counts from a
compact rank table) and src/anthropic_gateway/httpclient/_chunks.c (the upstream's chunked body cut
per socket read) and src/anthropic_gateway/translate/_run.c (a read's run of plain text events to
text_deltas). Everything else is in pyproject.toml. Without a C compiler (or Python's headers) the
build warns and goes on; the gateway then counts with tiktoken, reads every chunk through httptools
and builds the run in Python."""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

TOKENS = "src/anthropic_gateway/tokens"
HTTPCLIENT = "src/anthropic_gateway/httpclient"
TRANSLATE = "src/anthropic_gateway/translate"


class BuildExt(build_ext):
    """An in-place build (an editable install, ``build_ext --inplace``) first removes the source tree's
    copies of the extensions: a build that fails then leaves none of an older build behind, which the
    package would import instead of its Python fallback (the old code against changed sources)."""

    def run(self) -> None:
        if self.inplace or getattr(self, "editable_mode", False):
            package_dir = self.get_finalized_command("build_py").package_dir or {}
            root = package_dir.get("", "")
            for ext in self.extensions:
                path = os.path.join(root, self.get_ext_filename(ext.name))
                if os.path.exists(path):
                    os.remove(path)
        super().run()


setup(
    cmdclass={"build_ext": BuildExt},
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
