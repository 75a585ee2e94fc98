"""Compare classic neural style transfer, plain img2img and guided img2img on the same inputs.

`run` drives the stages, `metrics` scores each output, `report` writes the grid, curves, tables and
HTML page, `memory` measures each stage's peak memory.

    from guided.compare import compare
    report = compare("photo.jpg", styles=["painting.jpg"], prompt="an oil painting", out_dir="report")
"""
from guided.compare.memory import PeakMemory
from guided.compare.run import CompareReport, compare, parse_sweep

__all__ = ["CompareReport", "PeakMemory", "compare", "parse_sweep"]
