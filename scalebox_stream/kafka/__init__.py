"""Thin wrappers over confluent-kafka: topic naming, client configuration."""
