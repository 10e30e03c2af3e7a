"""The inngest_like executor: event API, durable queue and run state in Redis, workers."""
