"""Gateway keys with limits and budgets.

    keys.py     the keys: from the configuration ([keys.LABEL], the key itself in an environment
                variable) and from the store (only a SHA-256 of each key is kept; shown once at creation)
    limits.py   per-key rate limits (requests/min, tokens/min, concurrent requests) and spend budgets
                (USD per day / month, from the ledger), behind a Limiter interface (in memory here;
                Redis in the scale-out work)
    admin.py    the admin HTTP routes; cli.py the `anthropic-gateway keys` command
"""
