"""scalebox-stream: a streaming compute engine for containerized pipelines over Kafka."""

__version__ = "0.1.0"
