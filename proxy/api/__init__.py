"""REST API v1: thin views over proxy.services and proxy.selectors."""
