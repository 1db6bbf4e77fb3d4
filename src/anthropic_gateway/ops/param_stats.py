"""The seed's "parameter usage stats": how often clients send each extension parameter (OpenRouter's
``provider``, ``models``, ``transforms``, sampling extras, ...) and whether the backend kind that
served the request took it (forwarded) or not (dropped, as translate.policy.apply_parameters does).

One counter per (backend kind, parameter, outcome), counted once per request against the first
route's backend kind. /health/detailed and /metrics read :meth:`ParamStats.snapshot`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from anthropic_gateway.backends import BackendKind
from anthropic_gateway.schemas import EXTRA_PARAMETERS, MessagesRequest


class ParamStats:
    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, bool], int] = {}

    def count(self, req: MessagesRequest, kind: BackendKind) -> None:
        """Count the extension parameters ``req`` carries (a dozen attribute reads per request)."""
        counts = self._counts
        for name in EXTRA_PARAMETERS:
            if getattr(req, name) is not None:
                key = (kind.name, name, name in kind.extra_params)
                counts[key] = counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{kind: {"forwarded": {param: n}, "dropped": {param: n}}}``, only what was seen."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (kind, name, forwarded), n in sorted(self._counts.items()):
            per_kind = out.setdefault(kind, {"forwarded": {}, "dropped": {}})
            per_kind["forwarded" if forwarded else "dropped"][name] = n
        return out

    def collect(self) -> Iterator[Any]:
        """The counts as a Prometheus family (for Metrics.add_collector); the labels are bounded: backend
        kinds and the fixed list of extension parameters."""
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "anthropic_gateway_extension_parameters",
            "Requests carrying an extension parameter, by backend kind, forwarded to the upstream or dropped",
            labels=["kind", "parameter", "outcome"],
        )
        for (kind, name, forwarded), n in sorted(self._counts.items()):
            family.add_metric([kind, name, "forwarded" if forwarded else "dropped"], n)
        yield family
