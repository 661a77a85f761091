"""Run the target with ``python -m target_miso``."""

from target_miso.target import TargetMiso

TargetMiso.cli()
