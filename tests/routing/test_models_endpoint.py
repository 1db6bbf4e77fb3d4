"""GET /v1/models and /v1/models/{id} in Anthropic's shape, through the official SDK."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import anthropic
import httpx2
import pytest

from conftest import CLIENT_KEY
from e2e import error_of
from fake_upstream import FakeUpstream
from routing.conftest import Gateways, routing_config

_, MODELS = routing_config("http://a", "http://b", "http://c", "http://d")
EXACT = [a for a in MODELS if not any(c in a for c in "*?[")]
GLOBS = [a for a in MODELS if a not in EXACT]
HEADERS = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture
def client(routed_gateways: Gateways, upstream: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    with routed_gateways.no_retry.client() as c:
        yield c


@pytest.fixture
def all_ids(client: anthropic.Anthropic) -> list[str]:
    page = client.models.list(limit=1000)
    assert page.has_more is False
    return [m.id for m in page.data]


def test_the_list_holds_the_configured_aliases_and_claude_ids(all_ids: list[str], upstream: FakeUpstream) -> None:
    assert len(all_ids) == len(set(all_ids))
    assert set(EXACT) <= set(all_ids)
    assert not set(GLOBS) & set(all_ids), "a glob pattern is not a model id"
    extra = set(all_ids) - set(EXACT)
    assert extra and all(i.startswith("claude") for i in extra), extra  # Claude Code's discovery lists these
    assert upstream.requests == []  # listing is local


def test_entries_have_anthropics_shape(client: anthropic.Anthropic, all_ids: list[str]) -> None:
    page = client.models.list(limit=3)
    for model in page.data:
        assert model.type == "model"
        assert isinstance(model.display_name, str) and model.display_name
        assert isinstance(model.created_at, dt.datetime)
    raw = httpx2.get(f"{client.base_url}".rstrip("/") + "/v1/models", params={"limit": "2"}, headers=HEADERS,
                     timeout=10)
    assert raw.status_code == 200
    body = raw.json()
    assert set(body) >= {"data", "has_more", "first_id", "last_id"}
    assert [m["id"] for m in body["data"]] == all_ids[:2]
    assert (body["first_id"], body["last_id"], body["has_more"]) == (all_ids[0], all_ids[1], True)
    for m in body["data"]:
        assert set(m) >= {"type", "id", "display_name", "created_at"}
        dt.datetime.fromisoformat(m["created_at"].replace("Z", "+00:00"))


def test_first_page(client: anthropic.Anthropic, all_ids: list[str]) -> None:
    page = client.models.list(limit=5)
    assert [m.id for m in page.data] == all_ids[:5]
    assert (page.has_more, page.first_id, page.last_id) == (True, all_ids[0], all_ids[4])


def test_auto_pagination_walks_every_id_once(client: anthropic.Anthropic, all_ids: list[str]) -> None:
    assert [m.id for m in client.models.list(limit=4)] == all_ids
    pages = list(client.models.list(limit=4).iter_pages())
    assert len(pages) == -(-len(all_ids) // 4)
    assert [p.has_more for p in pages] == [True] * (len(pages) - 1) + [False]


def test_after_id(client: anthropic.Anthropic, all_ids: list[str]) -> None:
    page = client.models.list(after_id=all_ids[4], limit=3)
    assert [m.id for m in page.data] == all_ids[5:8]
    assert (page.first_id, page.last_id, page.has_more) == (all_ids[5], all_ids[7], True)
    last = client.models.list(after_id=all_ids[-2], limit=3)
    assert ([m.id for m in last.data], last.has_more) == ([all_ids[-1]], False)
    empty = client.models.list(after_id=all_ids[-1], limit=3)
    assert (empty.data, empty.has_more, empty.first_id, empty.last_id) == ([], False, None, None)


def test_before_id(client: anthropic.Anthropic, all_ids: list[str]) -> None:
    page = client.models.list(before_id=all_ids[10], limit=3)
    assert [m.id for m in page.data] == all_ids[7:10]
    assert (page.first_id, page.last_id, page.has_more) == (all_ids[7], all_ids[9], True)
    start = client.models.list(before_id=all_ids[2], limit=5)
    assert ([m.id for m in start.data], start.has_more) == (all_ids[:2], False)
    # the SDK pages backwards from before_id to the start
    walked = [m.id for m in client.models.list(before_id=all_ids[9], limit=4)]
    assert walked == all_ids[5:9] + all_ids[1:5] + all_ids[0:1]


@pytest.mark.parametrize("limit", ["0", "1001", "many"])
def test_bad_limit_is_a_400(client: anthropic.Anthropic, limit: str) -> None:
    raw = httpx2.get(f"{client.base_url}".rstrip("/") + "/v1/models", params={"limit": limit}, headers=HEADERS,
                     timeout=10)
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "invalid_request_error" and "limit" in raw.json()["error"]["message"]


@pytest.mark.parametrize("model_id", ["fast", "smart", "claude-opus-4-8", "claude-haiku-4-5-20251001",
                                      "some-vendor/some-model"])  # fmt: skip
def test_retrieve(client: anthropic.Anthropic, model_id: str) -> None:
    info = client.models.retrieve(model_id)
    assert (info.type, info.id) == ("model", model_id)
    assert isinstance(info.display_name, str) and info.display_name
    assert isinstance(info.created_at, dt.datetime)


def test_retrieve_of_a_listed_entry_matches_the_list(client: anthropic.Anthropic, all_ids: list[str]) -> None:
    listed = {m.id: m for m in client.models.list(limit=1000).data}
    for model_id in all_ids:
        assert client.models.retrieve(model_id).to_dict() == listed[model_id].to_dict()


def test_retrieve_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.models.retrieve("gpt-99")
    err = error_of(info.value)
    assert err["type"] == "not_found_error"
    assert "gpt-99" in err["message"] and "'fast'" in err["message"]
