"""The networks guidance and style transfer run on, and where their weights come from.

`vgg` (named-layer VGG features), `clip` (open_clip wrapper), `bundle` (`GuidanceModels`, the CLIP +
VGG + decoder set that guides diffusion) with `targets` (the cache of what was computed with them),
`loaders` (that set from real weights), `checkpoints` (weight files: safetensors, torch hub cache, hashes),
`hub` (Hugging Face model folders), `status` (what is present on this machine), `tiny` and
`tiny_sd` (random models built in code for tests and smoke runs).
"""
