"""What every handler needs, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from anthropic_gateway.auth import Authenticator
from anthropic_gateway.cache import ResponseCache
from anthropic_gateway.catalogue import Catalogue
from anthropic_gateway.ops.access_log import AccessLog
from anthropic_gateway.ops.cost import Pricer
from anthropic_gateway.ops.health import Prober, StatusProvider
from anthropic_gateway.ops.ledger import Ledger
from anthropic_gateway.ops.lifecycle import Lifecycle
from anthropic_gateway.ops.metrics import Metrics
from anthropic_gateway.ops.param_stats import ParamStats
from anthropic_gateway.ops.record import Recorder, RequestRecord
from anthropic_gateway.quota.keys import KeyStore
from anthropic_gateway.quota.limits import Limiter, MemoryLimiter, QuotaSink
from anthropic_gateway.routing import Router
from anthropic_gateway.service import MessagesService
from anthropic_gateway.settings import Settings
from anthropic_gateway.status.buckets import StatusBuckets
from anthropic_gateway.store import Store, open_store
from anthropic_gateway.threads.keeper import ThreadKeeper
from anthropic_gateway.upstream import UpstreamClient
from anthropic_gateway.upstream_errors import redact

if TYPE_CHECKING:
    from anthropic_gateway.batches.engine import BatchEngine
    from anthropic_gateway.shared.state import SharedState


@dataclass(slots=True)
class Gateway:
    settings: Settings
    router: Router
    auth: Authenticator
    upstream: UpstreamClient
    service: MessagesService
    recorder: Recorder
    store: Store
    ledger: Ledger
    prober: Prober
    metrics: Metrics
    catalogue: Catalogue  # OpenRouter backends' GET /models: prices, limits, capabilities
    param_stats: ParamStats  # extension parameters forwarded / dropped per backend kind: snapshot()
    keys: KeyStore
    limiter: Limiter  # MemoryLimiter, or RedisLimiter (quota/redis_limits.py) with redis_url
    response_cache: ResponseCache
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    _secrets: tuple[str, ...] | None = None  # known_secrets(), gathered on first use
    # Sections of /health/detailed that other parts contribute (e.g. "catalogue": its age and size).
    status_providers: dict[str, StatusProvider] = field(default_factory=dict)
    batches: BatchEngine | None = None  # started by the app's lifespan once the store is open
    status: StatusBuckets = field(default_factory=StatusBuckets)  # the status page's last hour (a sink)
    shared: SharedState | None = None  # redis_url: the Redis connection and what uses it (shared/)

    @classmethod
    def build(cls, settings: Settings) -> Gateway:
        router = Router(settings)
        upstream = UpstreamClient(settings)
        store = open_store(settings.database_url, settings.database_pool_size)
        ledger = Ledger(store, retention_days=settings.ledger_retention_days)
        keys = KeyStore(store)
        catalogue = Catalogue(router, store, settings.catalogue_refresh_hours, upstream)
        param_stats = ParamStats()
        service = MessagesService(settings, router, upstream, ThreadKeeper(settings, store),
                                  pricer=Pricer(settings.prices, catalogue), param_stats=param_stats)  # fmt: skip
        prober = Prober(upstream, list(router.backends.values()), settings.health_probe_interval)
        life = Lifecycle()
        metrics = Metrics(settings.models, router.backends, lambda: (life.requests, life.streams))
        shared = None
        if settings.redis_url:
            # Imported here: redis costs ~5 MB and ~80 ms of start-up to a gateway that does not use it.
            from anthropic_gateway.shared.state import SharedState

            shared = SharedState.build(settings, ledger.spend, upstream.refusals)
        limiter: Limiter = shared.limiter if shared is not None else MemoryLimiter(ledger.spend)
        cache_store = shared.cache_store if shared is not None else None
        gw = cls(settings, router, Authenticator(settings), upstream, service,
                 Recorder(), store, ledger, prober, metrics, catalogue, param_stats, keys, limiter,
                 ResponseCache(settings, service, cache_store), life, shared=shared)  # fmt: skip
        if shared is not None:
            gw.status_providers["redis"] = shared.redis.status
        gw.auth.stored = keys
        gw.status_providers["catalogue"] = catalogue.status
        gw.status_providers["parameters"] = param_stats.snapshot  # type: ignore[assignment]
        metrics.add_collector(param_stats.collect)
        gw.recorder.add(AccessLog(settings.log_format, bodies=settings.log_bodies, redact=gw.redact))
        gw.recorder.add(ledger)
        gw.recorder.add(metrics)
        gw.recorder.add(QuotaSink(gw.limiter))
        gw.recorder.add(gw.status)
        metrics.add_collector(gw.response_cache.collect)
        from anthropic_gateway.batches.engine import BatchEngine

        gw.batches = BatchEngine(gw)
        return gw

    def secrets(self) -> list[str]:
        """Every upstream key the gateway holds: none may ever reach a client or a log."""
        return [b.key.get_secret_value() for b in self.router.backends.values() if b.key is not None]

    def redact(self, text: str) -> str:
        """``text`` without any key the gateway holds or accepts (upstream, client, admin)."""
        for secret in self._secrets if self._secrets is not None else self.known_secrets():
            if secret in text:
                text = redact(text, secret)
        return text

    def known_secrets(self) -> tuple[str, ...]:
        """Every key in the configuration, gathered once: the settings and the backends are fixed
        for the process's life, and the access log asks on every request."""
        if self._secrets is None:
            held = (k for _, k, _ in self.settings.gateway_keys())
            found = (*self.secrets(), *self.settings.client_keys(), *self.settings.admin_key_list(), *held)
            self._secrets = tuple(s for s in dict.fromkeys(found) if s)
        return self._secrets


def gateway_of(request: Request) -> Gateway:
    gw: Gateway | None = request.scope["state"].get("gateway")  # put there by the front door
    return gw if gw is not None else request.app.state.gateway  # type: ignore[no-any-return]


def require_admin(request: Request) -> Gateway:
    """The gateway, once the caller has shown an admin key (where keys are configured)."""
    gw = gateway_of(request)
    gw.auth.check_admin(request.headers)
    record_of(request).key_label = "admin"
    return gw


def record_of(request: Request) -> RequestRecord:
    rec: RequestRecord = request.scope["state"]["record"]
    return rec
