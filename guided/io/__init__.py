"""Files in and out: images with their labelled metadata (`images`), run manifests (`manifest`),
loss-curve plots (`plots`)."""
