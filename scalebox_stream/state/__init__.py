"""Shared state on the log: semaphores, variables, globals and app results (see docs/state.md).

Commands go to a topic partitioned by (app, name); one owner per partition applies them in order (`machine`,
pure) and commits the new values to a compacted changelog, the replies and a StateChanged event in one Kafka
transaction (`owner`). `client` sends a request and waits for its reply; `api` is what the CLI calls.
"""
