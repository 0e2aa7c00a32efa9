"""The sandbox's try-it tools: the call player, the try-a-call page and ``simulate_call``.

A development harness on top of the product: it may import any of it, and nothing in the
product imports it (only ``config.urls`` and ``INSTALLED_APPS`` name it).
"""
