"""target-miso: a Singer target that delivers warehouse clickstream to Miso.ai as interactions."""
