"""The Snowplow preset: atomic events to interactions, with zero custom code."""
