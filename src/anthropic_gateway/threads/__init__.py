"""Server-held message threads: the `thread` field of the Messages API, kept in the gateway's store."""
