"""`anthropic-gateway check`: validate the configuration, show where each alias goes, and (with
--online) probe each backend's models endpoint."""

from __future__ import annotations

import asyncio
from typing import TextIO

from anthropic_gateway.routing import TIERS, Backend, Route, Router
from anthropic_gateway.settings import Settings


def describe(settings: Settings) -> list[str]:
    router = Router(settings)
    lines = ["backends:"]
    for backend in router.backends.values():
        key = "key set" if backend.key is not None else f"NO KEY ({backend.key_env})"
        marker = " (default)" if backend is router.default else ""
        lines.append(f"  {backend.name}{marker}: {backend.kind.name} {backend.base_url} [{key}]")
    lines.append("models:")
    for alias, route in _listed(router):
        lines.append(f"  {alias} -> {_route(route)}")
    lines.append(f"  <provider/model ids> -> {router.default.name}, passed through unchanged")
    return lines


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


async def probe(backend: Backend, timeout: float = 10.0) -> str:
    import aiohttp

    headers = {"Authorization": "Bearer " + backend.key.get_secret_value()} if backend.key else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.get(backend.base_url + "/models", headers=headers) as resp:  # fmt: skip
            if resp.status == 200:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    return "answers, but not with JSON (is this an OpenAI-compatible /v1 URL?)"
                listed = data.get("data") if isinstance(data, dict) else None
                return f"ok ({len(listed)} models)" if isinstance(listed, list) else "ok (no model list)"
            return f"HTTP {resp.status}"
    except (aiohttp.ClientError, TimeoutError) as err:
        return f"unreachable ({type(err).__name__})"


def run(settings: Settings, online: bool, out: TextIO) -> int:
    for line in describe(settings):
        print(line, file=out)
    if not online:
        return 0
    router = Router(settings)

    async def probe_all() -> list[str]:
        return await asyncio.gather(*(probe(b) for b in router.backends.values()))

    results = asyncio.run(probe_all())
    print("online:", file=out)
    failed = 0
    for backend, result in zip(router.backends.values(), results, strict=True):
        print(f"  {backend.name}: {result}", file=out)
        failed += not result.startswith("ok")
    return 1 if failed else 0
