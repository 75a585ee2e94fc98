"""`make demo`: classic and guided stylization and a compare report, on real weights where present
(`python -m guided.demo --out out/demo`)."""
from guided.demo.run import main

__all__ = ["main"]
