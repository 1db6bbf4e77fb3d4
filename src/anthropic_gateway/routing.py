"""The one place that resolves a client's model name to a backend and an upstream model id.

Order: an exact configured alias; the first configured glob pattern that matches (file order); a
name containing '/' passes through to the default backend; a ``claude-*`` name maps by family (opus /
sonnet / haiku as substrings, so names Claude Code invents later still map; other claude names → the
sonnet tier); with ``passthrough_models`` any other name passes through; otherwise a 404 naming the
configured aliases. The client's name is what responses echo.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from anthropic_gateway.backends import KINDS, BackendKind
from anthropic_gateway.errors import NotFoundError, shown
from anthropic_gateway.model_config import ALL_CAPABILITIES, BackendConfig, ModelConfig
from anthropic_gateway.output_limits import OutputLimits
from anthropic_gateway.settings import Settings

TIERS = ("opus", "sonnet", "haiku")


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    base_url: str
    chat_url: str
    key: SecretStr | None
    kind: BackendKind
    system_in_place: bool
    key_env: str | None = "OPENROUTER_API_KEY"
    headers: tuple[tuple[str, str], ...] = ()
    connect_timeout: float | None = None
    first_byte_timeout: float | None = None
    idle_timeout: float | None = None
    total_timeout: float | None = None
    max_concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class Route:
    client_model: str
    upstream_model: str
    backend: Backend
    config: ModelConfig | None = None
    alias: str | None = None
    max_output_tokens: int | None = None  # the target's own output limit, when known (output_limits)
    context_window: int | None = None  # the configured one, else the model catalogue's
    catalogue_capabilities: frozenset[str] | None = None  # the catalogue's, where the alias sets none

    @property
    def target_is_claude(self) -> bool:
        m = self.upstream_model.lower()
        return m.startswith("anthropic/") or "claude" in m

    @property
    def capabilities(self) -> frozenset[str]:
        if self.config is not None and self.config.capabilities is not None:
            return self.config.capability_set()
        return self.catalogue_capabilities if self.catalogue_capabilities is not None else ALL_CAPABILITIES

    @property
    def fallbacks(self) -> tuple[str, ...]:
        return tuple(self.config.fallbacks) if self.config is not None else ()


def tier_of(model: str) -> str | None:
    """The Claude tier a name without a configured alias maps to: ``claude-*`` names by family (opus
    / sonnet / haiku as substrings; other claude names → sonnet); None for any other name."""
    lowered = model.lower()
    if "/" in model or not lowered.startswith("claude"):
        return None
    return next((f for f in TIERS if f in lowered), "sonnet")


@dataclass(frozen=True, slots=True)
class ModelHint:
    """What a model catalogue knows of a model that routing uses (None: unknown)."""

    context_window: int | None = None
    capabilities: frozenset[str] | None = None


def _is_glob(alias: str) -> bool:
    return any(c in alias for c in "*?[")


class Router:
    def __init__(self, settings: Settings) -> None:
        default = Backend(
            name="default",
            base_url=settings.upstream_url,
            chat_url=settings.upstream_url + "/chat/completions",
            key=settings.upstream_key,
            kind=kind_with(KINDS[settings.resolved_backend_kind()], settings),
            system_in_place=settings.system_messages == "keep",
            first_byte_timeout=settings.first_byte_timeout,
        )
        self.backends: dict[str, Backend] = {"default": default}
        for name, cfg in settings.backends.items():
            self.backends[name] = _backend(name, cfg, settings)
        self.default = self.backends[settings.default_backend]
        self.tiers = {"opus": settings.opus_model, "sonnet": settings.sonnet_model, "haiku": settings.haiku_model}
        self.exact = {a: m for a, m in settings.models.items() if not _is_glob(a)}
        self.patterns = [(a, m) for a, m in settings.models.items() if _is_glob(a)]
        self.passthrough = settings.passthrough_models
        self.output_limits = OutputLimits(m.max_output_tokens for m in settings.models.values())
        # (backend name, upstream model id) → (context window, capabilities), from a model catalogue.
        self.model_hints: dict[tuple[str, str], ModelHint] = {}
        self._cache: dict[str, Route] = {}

    def feed_output_limits(self, limits: Mapping[str, int]) -> None:
        """Upstream model id → its output limit (from a model catalogue): clamps and the max_tokens
        ceiling use them from the next request on."""
        self.output_limits.feed(limits)
        self._cache.clear()

    def feed_model_hints(self, backend: str, hints: Mapping[str, ModelHint]) -> None:
        """A backend's models' context windows and capabilities (from a model catalogue); an alias's
        own ``context_window`` and ``capabilities`` win over them."""
        self.model_hints = {k: v for k, v in self.model_hints.items() if k[0] != backend}
        self.model_hints.update(((backend, model), hint) for model, hint in hints.items())
        self._cache.clear()

    def resolve(self, model: str) -> Route:
        route = self._cache.get(model)
        if route is None:
            route = self._resolve(model)
            limit = self.output_limits.of(route.upstream_model, route.config.max_output_tokens if route.config else None)
            if limit is not None:
                route = dataclasses.replace(route, max_output_tokens=limit)
            route = self._hinted(route)
            # Bounded in count and size: clients choose these strings.
            if len(self._cache) < 4096 and len(model) <= 256:
                self._cache[model] = route
        return route

    def _hinted(self, route: Route) -> Route:
        cfg = route.config
        context = cfg.context_window if cfg is not None else None
        hint = self.model_hints.get((route.backend.name, route.upstream_model)) if self.model_hints else None
        if hint is None and self.model_hints and ":" in route.upstream_model:  # a variant (":nitro") of a model
            hint = self.model_hints.get((route.backend.name, route.upstream_model.rsplit(":", 1)[0]))
        if hint is None:
            return route if context is None else dataclasses.replace(route, context_window=context)
        caps = hint.capabilities if cfg is None or cfg.capabilities is None else None
        return dataclasses.replace(route, context_window=context or hint.context_window, catalogue_capabilities=caps)

    def _resolve(self, model: str) -> Route:
        alias, config = self._configured(model)
        if config is not None:
            backend = self.backends[config.backend] if config.backend else self.default
            return Route(model, config.model or model, backend, config, alias)
        if "/" in model:
            return Route(model, model, self.default)
        family = tier_of(model)
        if family is not None:
            return Route(model, self.tiers[family], self.default)
        if self.passthrough:
            return Route(model, model, self.default)
        name = shown(model)
        raise NotFoundError(
            f"model: '{name}' is not a model this gateway serves. It serves {self.describe_aliases()}. "
            f"To serve '{name}', add [models.\"{name}\"] to the config file (or ANTHROPIC_GATEWAY_MODELS), "
            "or set ANTHROPIC_GATEWAY_PASSTHROUGH_MODELS=true to send unknown names to the default backend unchanged"
        )

    def _configured(self, model: str) -> tuple[str | None, ModelConfig | None]:
        config = self.exact.get(model)
        if config is not None:
            return model, config
        lowered = model.lower()
        for alias, cfg in self.patterns:
            if fnmatch.fnmatchcase(lowered, alias.lower()):
                return alias, cfg
        return None, None

    def describe_aliases(self) -> str:
        names = [*self.exact, *(a for a, _ in self.patterns)]
        listed = "the configured aliases " + ", ".join(f"'{n}'" for n in names) if names else "no configured aliases"
        return f"claude-* names (mapped to the opus / sonnet / haiku tiers), provider/model ids such as openai/gpt-4o, and {listed}"

    def aliases(self) -> list[tuple[str, Route]]:
        """Every model id the gateway lists: the exact aliases, then one id per Claude tier."""
        listed = [(alias, self.resolve(alias)) for alias in self.exact]
        listed += [(f"claude-{tier}", self.resolve(f"claude-{tier}")) for tier in TIERS
                   if f"claude-{tier}" not in self.exact]  # fmt: skip
        return listed


KIND_OVERRIDES = ("reports_matched_stop", "stream_tool_input", "native_context_management")


def kind_with(kind: BackendKind, config: BackendConfig | Settings) -> BackendKind:
    """A kind with a backend's configured overrides (unset ones keep the kind's default)."""
    overrides = {name: getattr(config, name) for name in KIND_OVERRIDES if getattr(config, name) is not None}
    return dataclasses.replace(kind, **overrides) if overrides else kind


def _backend(name: str, cfg: BackendConfig, settings: Settings) -> Backend:
    kind = kind_with(KINDS[cfg.resolved_kind()], cfg)
    if cfg.tool_id_max_len is not None:
        kind = dataclasses.replace(kind, tool_id_max_len=cfg.tool_id_max_len)
    system_mode = cfg.system_messages or settings.system_messages
    return Backend(
        name=name,
        base_url=cfg.url,
        chat_url=cfg.url + "/chat/completions",
        key=settings.backend_key(name),
        kind=kind,
        system_in_place=system_mode == "keep",
        key_env=cfg.key_env,
        headers=tuple(cfg.headers.items()),
        connect_timeout=cfg.connect_timeout,
        first_byte_timeout=cfg.first_byte_timeout or settings.first_byte_timeout,
        idle_timeout=cfg.idle_timeout,
        total_timeout=cfg.total_timeout,
        max_concurrency=cfg.max_concurrency,
    )
