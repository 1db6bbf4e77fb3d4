"""Which backends need an upstream key, and what to tell the user when one is missing.

Hosted APIs (the openrouter and openai kinds) need a key; local OpenAI-compatible servers (Ollama,
vLLM, LM Studio, llama.cpp) take none, and a backend without a key sends no Authorization header.
A missing key that is needed is reported three ways with the same words: a warning at start-up, a
refusal by `anthropic-gateway claude` and `check`, and per request a 500 naming the variable (after
the route's fallbacks were tried).
"""

from __future__ import annotations

from collections.abc import Iterable

from anthropic_gateway.errors import APIError, NotFoundError
from anthropic_gateway.routing import Backend, Router
from anthropic_gateway.settings import UPSTREAM_KEY_VARS, Settings
from anthropic_gateway.upstream_errors import NO_RETRY


def lacks_key(backend: Backend) -> bool:
    """Whether calls to `backend` cannot be made: it needs a key and has none."""
    return backend.key is None and backend.kind.requires_key


def unset_key_env(backend: Backend) -> str | None:
    """The variable a keyless backend's key_env names but that is not set (its calls go without a key)."""
    named = backend.name != "default" and backend.key is None
    return backend.key_env if named and not lacks_key(backend) else None


def key_hint(backend: Backend) -> str:
    """What to set so that `backend` has its key."""
    if backend.name == "default":
        return f"{UPSTREAM_KEY_VARS[0]} (or {UPSTREAM_KEY_VARS[1]})"
    if backend.key_env:
        return f"{backend.key_env} (named by backends.{backend.name}.key_env)"
    return f"key_env in [backends.{backend.name}] to the name of the variable that holds its key"


def missing_key_error(backend: Backend) -> APIError:
    return APIError(
        f"The gateway has no upstream API key for backend '{backend.name}': set {key_hint(backend)} and restart it",
        headers=NO_RETRY,
    )


def used_backends(settings: Settings, router: Router) -> list[Backend]:
    """The backends some request can reach: the default one (tiers, provider/model ids) and every
    backend an alias names. The unnamed 'default' upstream is unused when default_backend moved away."""
    names = {router.default.name}
    names.update(m.backend or router.default.name for m in settings.models.values())
    return [b for name, b in router.backends.items() if name in names]


def startup_warnings(settings: Settings, router: Router) -> list[str]:
    if settings.passthrough_auth:
        return []  # clients bring the upstream key
    out = []
    for backend in used_backends(settings, router):
        if lacks_key(backend):
            out.append(f"no upstream key for backend '{backend.name}': set {key_hint(backend)} "
                       "(its requests fail with a 500 until then)")  # fmt: skip
        elif unset_key_env(backend):
            out.append(f"backend '{backend.name}': {backend.key_env} is not set, so its requests carry no key")
    return out


def unserved(router: Router, models: Iterable[str]) -> list[tuple[str, Backend]]:
    """The model names for which no candidate (the route, then its fallbacks) has a key, each with
    the backend its route goes to."""
    out = []
    for model in models:
        try:
            route = router.resolve(model)
        except NotFoundError:
            continue  # reported when requested, with the names that are served
        candidates = [route.backend, *(router.resolve(name).backend for name in route.fallbacks)]
        if all(lacks_key(b) for b in candidates):
            out.append((model, route.backend))
    return out


def unserved_lines(items: list[tuple[str, Backend]]) -> list[str]:
    """One line per backend: the models that would fail, and the variable to set."""
    by_backend: dict[str, tuple[Backend, list[str]]] = {}
    for model, backend in items:
        by_backend.setdefault(backend.name, (backend, []))[1].append(model)
    return [f"{', '.join(models)} {'go' if len(models) > 1 else 'goes'} to backend '{b.name}', which has no "
            f"upstream key: set {key_hint(b)}" for b, models in by_backend.values()]  # fmt: skip
