"""Push sources: streams that produce the same Observations as probes, seconds sooner."""

from monitor.streams.jetstream import JetstreamConsumer

__all__ = ["JetstreamConsumer"]
