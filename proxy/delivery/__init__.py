"""Delivery workers: the worker side of the outboxes. They call services and the provider."""
