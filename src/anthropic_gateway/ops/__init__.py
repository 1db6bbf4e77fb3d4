"""Operations: the per-request record and what consumes it (logs, metrics, the ledger), health."""
