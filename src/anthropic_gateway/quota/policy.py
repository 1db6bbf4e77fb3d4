"""What a key may do: its allowed models, rate limits and budgets (all optional)."""

from __future__ import annotations

import fnmatch
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class KeyLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[str, ...] = Field((), description="Model names or glob patterns the key may use; empty: any.")
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1, description="Input plus output tokens per minute.")
    max_concurrent: int | None = Field(None, ge=1, description="Requests in flight at once.")
    daily_budget_usd: float | None = Field(None, gt=0, description="Spend per UTC day, from the ledger's costs.")
    monthly_budget_usd: float | None = Field(None, gt=0, description="Spend per UTC month.")

    def allows_model(self, model: str) -> bool:
        if not self.models:
            return True
        lowered = model.lower()
        return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in self.models)

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.requests_per_minute, self.tokens_per_minute, self.max_concurrent,
                                           self.daily_budget_usd, self.monthly_budget_usd))  # fmt: skip

    def summary(self) -> dict[str, Any]:
        return self.model_dump(exclude_defaults=True)


class KeyConfig(KeyLimits):
    """A key in the configuration: `[keys.LABEL]` with `key_env` naming the variable holding it."""

    key_env: str = Field(description="Name of the environment variable holding the key (keys never go in files).")
