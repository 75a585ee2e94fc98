"""Training photos for a fast network: a folder of images, random resized crops and flips.

Every sample is a pure function of (seed, global sample number k): the epoch is k // N, the photo is
that epoch's seeded permutation at k % N, and the crop and flip come from a generator seeded with
(seed, k). So the data do not depend on the number of loader workers or processes, and a resumed run
continues exactly where it stopped: its sampler simply starts at the next k.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from guided.errors import GuidedError
from guided.fast.config import SIDE_FILE_SUFFIXES

logger = logging.getLogger(__name__)

#: Random resized crop: the crop covers this fraction range of the photo's area. Down to 1/5 so few
#: photos still give many different views; up to the whole photo, which is what stylizing sees.
CROP_SCALE = (0.2, 1.0)
#: Aspect ratio range of the crops (w / h) before they are resized to a square, torchvision's default.
CROP_RATIO = (3 / 4, 4 / 3)


@dataclass
class PhotoFolder:
    """The usable photos of a folder (recursive, with the batch loader's safety rules)."""

    root: Path
    files: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, one-line reason)

    @classmethod
    def scan(cls, root: str | Path, *, exclude: str | Path | None = None) -> PhotoFolder:
        """Every image under `root` that decodes; broken ones are skipped and counted, never fatal.

        An empty folder, or one where no image decodes, is a `GuidedError` naming it."""
        from guided.io.discovery import find_images, image_extensions
        from guided.io.images import ALLOWED_FORMATS, load_image

        root = Path(root)
        if not root.exists():
            raise GuidedError(f"`--data` folder '{root}' does not exist")
        if not root.is_dir():
            raise GuidedError(f"`--data` '{root}' is not a folder")
        names = find_images(root, extensions=image_extensions(ALLOWED_FORMATS), recursive=True, exclude=exclude)
        side = [rel for rel in names if rel.endswith(SIDE_FILE_SUFFIXES)]
        if side:
            logger.info("not training on %d loss-curve/sample-grid file(s) of earlier runs in '%s'", len(side), root)
            names = [rel for rel in names if not rel.endswith(SIDE_FILE_SUFFIXES)]
        files, skipped = [], []
        for rel in names:
            try:
                load_image(root / rel, what="training photo")
            except GuidedError as exc:
                skipped.append((rel, str(exc)))
                logger.warning("skipped: %s", exc)
                continue
            files.append(root / rel)
        if not files:
            found = f"{len(names)} image file(s), none readable" if names else "no image files"
            raise GuidedError(f"`--data` folder '{root}' holds {found} (jpg, png, webp, bmp, tiff, gif; "
                              "searched recursively, hidden files skipped)")
        return cls(root, files, skipped)


def crop_box(width: int, height: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop (area in CROP_SCALE, aspect in CROP_RATIO)."""
    area = width * height
    for _ in range(10):
        u = torch.rand(2, generator=generator).tolist()
        target = area * (CROP_SCALE[0] + u[0] * (CROP_SCALE[1] - CROP_SCALE[0]))
        log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
        ratio = math.exp(log_lo + u[1] * (log_hi - log_lo))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    side = min(width, height)  # fallback: the central square
    return (height - side) // 2, (width - side) // 2, side, side


def sample_generator(seed: int, k: int) -> torch.Generator:
    """The generator of sample number `k`: independent of workers, processes and resumption."""
    return torch.Generator().manual_seed((seed * 1_000_003 + k) % (2**63))


class CropDataset(Dataset):
    """Item `k` (a global sample number) -> a (3, size, size) crop in [0, 1], see the module docstring."""

    def __init__(self, files: list[Path], size: int, seed: int):
        self.files, self.size, self.seed = list(files), int(size), int(seed)
        self._perms: dict[int, list[int]] = {}

    def __len__(self) -> int:  # samples are numbered without end; epochs are a view of k
        return 2**62

    def photo_index(self, k: int) -> int:
        epoch, position = divmod(k, len(self.files))
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(len(self.files),
                                                 generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()}
        return self._perms[epoch][position]

    def __getitem__(self, k: int) -> Tensor:
        from torchvision.transforms import functional as TF

        from guided.io.images import load_image, pil_to_tensor

        image = load_image(self.files[self.photo_index(k)], what="training photo")
        g = sample_generator(self.seed, k)
        top, left, h, w = crop_box(image.width, image.height, g)
        crop = TF.resized_crop(image, top, left, h, w, [self.size, self.size],
                               interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        if torch.rand(1, generator=g).item() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return pil_to_tensor(crop)[0]


class StepSampler(Sampler[int]):
    """Sample numbers of this process for steps `start`..`end`-1: global batch `s` is samples
    s*B .. s*B+B-1 (B = batch per process x processes); process r takes its slice of each."""

    def __init__(self, start: int, end: int, batch_size: int, rank: int = 0, world: int = 1):
        self.start, self.end, self.batch_size, self.rank, self.world = start, end, batch_size, rank, world

    def __iter__(self) -> Iterator[int]:
        total = self.batch_size * self.world
        for step in range(self.start, self.end):
            first = step * total + self.rank * self.batch_size
            yield from range(first, first + self.batch_size)

    def __len__(self) -> int:
        return (self.end - self.start) * self.batch_size


def sample_photos(files: list[Path], size: int, count: int = 4) -> Tensor:
    """Fixed previews for the sample grid: the first `count` photos' centre squares at `size` px, (n, 3, size, size)."""
    from torchvision.transforms import functional as TF

    from guided.io.images import load_image, pil_to_tensor

    out = []
    for path in files[:count]:
        image = load_image(path, what="training photo")
        side = min(image.size)
        square = TF.center_crop(image, [side, side])
        out.append(pil_to_tensor(square.resize((size, size), Image.Resampling.LANCZOS))[0])
    return torch.stack(out)
