"""One run of the target: delivery, checkpoints and STATE, rejects, stopping, the summary."""
