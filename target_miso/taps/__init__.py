"""Small Singer taps shipped with target-miso where no existing tap reads a source correctly."""
