"""One gateway for the fuzz tests: it passes any model name upstream (so generated requests get past
routing into translation) and the fake upstream answers every call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import GATEWAY_ENV, GatewayProcess, start_gateway, stop_gateway
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, usage_chunk
from fuzz import check_log

FUZZ_ENV = {
    **GATEWAY_ENV,
    "ANTHROPIC_GATEWAY_PASSTHROUGH_MODELS": "true",
    "ANTHROPIC_GATEWAY_BACKEND_KIND": "openrouter",  # web search goes to the fake as the web plugin
    "ANTHROPIC_GATEWAY_RETRIES": "0",
    "ANTHROPIC_GATEWAY_LOG_LEVEL": "info",
}


@pytest.fixture(scope="session")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("fuzz")
    gw = start_gateway(workdir / "gateway.log", upstream_url=_upstream_server.base_url, env=FUZZ_ENV, cwd=workdir)
    yield gw
    stop_gateway(gw)
    check_log(gw.log_text())


@pytest.fixture
def answering(_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """The fake upstream answering every call with a short text, streamed or not."""
    _upstream_server.reset()
    _upstream_server.always(Reply.auto([text_chunk("ok"), finish_chunk("stop"), usage_chunk(5, 1)]))
    yield _upstream_server
    _upstream_server.reset()
