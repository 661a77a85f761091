"""Catalog streams: product and user tables synced to Miso's /v1/products and /v1/users."""
