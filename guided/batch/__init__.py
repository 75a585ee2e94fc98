"""Batch stylization of whole folders: resumable, nothing lost, split over processes.

`engine` plans and runs the items (and the processes), `items` finds the images and names the
outputs, `jobs` turns one image into one output (stylize or gatys), `journal` is the JSONL record
of what is done.
"""
from guided.batch.engine import BatchJob, BatchSummary, param_hash, run_batch

__all__ = ["BatchJob", "BatchSummary", "param_hash", "run_batch"]
