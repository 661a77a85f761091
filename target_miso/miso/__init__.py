"""Miso's Data API: the HTTP client, the interaction schema, and the local sandbox."""
