"""Message Batches for any model: Anthropic's Batches API and the seed's streamed batch endpoint.

- ``envelope``: the creation body, validated as Anthropic validates it (items later, one by one)
- ``db``: the tables (migration 30) and their queries
- ``engine``: feeding, workers, writing results, cancel, expiry and retention
- ``worker``: one request through ``MessagesService.answer`` with its own request record
- ``routes``: the HTTP handlers (registered in http/table.py); ``cli``: ``anthropic-gateway batch …``
"""
