"""The HTTP API's routers, one per area: server (health, docs, stats), search, classify, files, jobs."""
