"""`anthropic-gateway check`: validate the configuration, show where each alias goes, report the
problems (a backend some route uses without its key; with --online a backend that does not answer
or does not list an alias's upstream model) and exit 1 when there is any."""

from __future__ import annotations

import asyncio
import difflib
from typing import TextIO

from anthropic_gateway import keys
from anthropic_gateway.routing import TIERS, Backend, Route, Router
from anthropic_gateway.settings import Settings


def describe(settings: Settings) -> list[str]:
    router = Router(settings)
    lines = ["backends:"]
    for backend in router.backends.values():
        key = _key_state(backend)
        marker = " (default)" if backend is router.default else ""
        lines.append(f"  {backend.name}{marker}: {backend.kind.name} {backend.base_url} [{key}]")
    lines.append("models:")
    for alias, route in _listed(router):
        lines.append(f"  {alias} -> {_route(route)}")
    lines.append(f"  <provider/model ids> -> {router.default.name}, passed through unchanged")
    return lines


def _key_state(backend: Backend) -> str:
    if backend.key is not None:
        return "key set"
    if keys.lacks_key(backend):
        return f"NO KEY: set {keys.key_hint(backend)}"
    unset = keys.unset_key_env(backend)
    return f"no key: {unset} is not set" if unset else "no key needed"


def _listed(router: Router) -> list[tuple[str, Route]]:
    out = [(alias, router.resolve(alias)) for alias in router.exact]
    for pattern, config in router.patterns:
        backend = router.backends[config.backend] if config.backend else router.default
        out.append((pattern, Route(pattern, config.model or "<the requested name>", backend, config, pattern)))
    # A tier shows only where no configured alias takes its names first.
    out += [(f"claude-*{t}*", Route(t, router.tiers[t], router.default)) for t in TIERS
            if router.resolve(f"claude-{t}").config is None]  # fmt: skip
    return out


def _route(route: Route) -> str:
    parts = [f"{route.backend.name}:{route.upstream_model}"]
    cfg = route.config
    if cfg is not None:
        if cfg.max_output_tokens:
            parts.append(f"max_output_tokens={cfg.max_output_tokens}")
        if cfg.context_window:
            parts.append(f"context_window={cfg.context_window}")
        if cfg.capabilities is not None:
            parts.append("capabilities=" + ",".join(cfg.capabilities) if cfg.capabilities else "capabilities=none")
        if cfg.fallbacks:
            parts.append("fallbacks=" + ",".join(cfg.fallbacks))
    return " ".join(parts)


async def probe(backend: Backend, timeout: float = 10.0) -> tuple[str, set[str] | None]:
    """(what the backend's /models answered, the model ids it lists or None)."""
    import aiohttp

    headers = {"Authorization": "Bearer " + backend.key.get_secret_value()} if backend.key else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.get(backend.base_url + "/models", headers=headers) as resp:  # fmt: skip
            if resp.status != 200:
                return f"HTTP {resp.status}", None
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                return "answers, but not with JSON (is this an OpenAI-compatible /v1 URL?)", None
    except (aiohttp.ClientError, TimeoutError) as err:
        return f"unreachable ({type(err).__name__})", None
    listed = data.get("data") if isinstance(data, dict) else None
    if not isinstance(listed, list):
        return "ok (no model list)", None
    ids = {m["id"] for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str)}
    return f"ok ({len(ids)} models)", ids


def key_problems(settings: Settings, router: Router) -> list[str]:
    if settings.passthrough_auth:
        return []  # clients bring the upstream key
    return [f"backend '{b.name}' has no upstream key: set {keys.key_hint(b)}"
            for b in keys.used_backends(settings, router) if keys.lacks_key(b)]  # fmt: skip


def model_problems(router: Router, listed: dict[str, set[str] | None]) -> list[str]:
    """Each alias whose upstream model its backend does not list (backends without a list are skipped)."""
    out = []
    for alias, route in _listed(router):
        ids = listed.get(route.backend.name)
        if ids is None or route.upstream_model.startswith("<") or route.upstream_model in ids:
            continue  # no list to check against, a pattern passing the requested name on, or listed
        near = difflib.get_close_matches(route.upstream_model, sorted(ids), n=1)
        hint = f" (closest: {near[0]})" if near else ""
        out.append(f"{alias}: backend '{route.backend.name}' does not list model '{route.upstream_model}'{hint}")
    return out


def run(settings: Settings, online: bool, out: TextIO) -> int:
    from anthropic_gateway.tokens.vocab import counter_state

    state = counter_state()
    print(f"token counter: {'compiled o200k (tokens/_o200k)' if state is None else state}", file=out)
    for line in describe(settings):
        print(line, file=out)
    router = Router(settings)
    problems = [*settings.warnings(), *key_problems(settings, router)]
    if online:
        backends = keys.used_backends(settings, router)

        async def probe_all() -> list[tuple[str, set[str] | None]]:
            return await asyncio.gather(*(probe(b) for b in backends))

        results = asyncio.run(probe_all())
        print("online:", file=out)
        for backend, (result, _) in zip(backends, results, strict=True):
            print(f"  {backend.name}: {result}", file=out)
            if not result.startswith("ok"):
                problems.append(f"backend '{backend.name}': {result}")
        problems += model_problems(router, {b.name: ids for b, (_, ids) in zip(backends, results, strict=True)})
    if problems:
        print("problems:", file=out)
        for problem in problems:
            print(f"  {problem}", file=out)
        return 1
    print("ok", file=out)
    return 0
