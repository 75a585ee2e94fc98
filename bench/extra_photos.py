"""More real photos for training and checking fast networks (not a test): the sample photos that ship
inside the wheels of a few Python packages, extracted into folders outside the repository (the project
never copies images into itself).

    .venv/bin/python bench/extra_photos.py --out /tmp/train16 --held-out /tmp/fresh --fresh /tmp/fresh2

`--out` gets the training photos used in bench/README.md ("Fast networks"): china.jpg, flower.jpg
(scikit-learn), motorcycle_left.png, camera.png, grass.png, brick.png (scikit-image),
grace_hopper.jpg (matplotlib) and, from the fifth session on, cheetah.jpg, cheetah1.jpg, cheetah2.jpg,
lion.jpg and tower.jpg (gradio's media assets). Copy ../shared/images/rainier.jpg, amber.jpg,
photos/astronaut.png and photos/coffee.png into `--out` too: 11 photos without gradio's, 16 with.
`--held-out` gets face.png (scipy 1.9's `misc.face`, a raccoon): a held-out photo that has shaped
choices since the fifth session, like ../shared's chelsea.png and rocket.jpg. `--fresh` gets photos kept
out of every training and every choice: quokka.jpg (imgaug), t1.jpg (insightface's group photo) and
luispedro.jpg (a portrait in mahotas' demos). The wheels come from the package index (`pip download`,
~40 MB) and are only unzipped, never installed. Licences: china.jpg and flower.jpg are CC BY 2.0
(sklearn/datasets/images/README.txt in the wheel); for the others see the docstrings of `skimage.data`'s
functions, matplotlib's sample-data notes, `scipy.misc.face` and each package's own licence. They are
measured here, never redistributed.
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
from guided.io.files import atomic_write  # noqa: E402  (no partial photo in a training folder)

#: wheel name prefix -> members to extract (path inside the wheel), per role
TRAIN = {
    "scikit_learn": ["sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"],
    "scikit_image": ["skimage/data/motorcycle_left.png", "skimage/data/camera.png", "skimage/data/grass.png",
                     "skimage/data/brick.png"],
    "matplotlib": ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
    "gradio": [f"gradio/media_assets/images/{name}" for name in ("cheetah.jpg", "cheetah1.jpg", "lion.jpg",
                                                                  "tower.jpg")] + ["gradio/test_data/cheetah2.jpg"],
}
FRESH = {
    "imgaug": ["imgaug/quokka.jpg"],
    "insightface": ["insightface/data/images/t1.jpg"],
    "mahotas": ["mahotas/demos/data/luispedro.jpg"],
}
REQUIREMENTS = ["scikit-learn", "scikit-image", "matplotlib", "scipy==1.9.3",  # scipy >= 1.10 downloads its face
                "gradio==6.31.0", "imgaug==0.4.0", "insightface==2.1", "mahotas==1.4.19"]
#: Wheels are only unzipped, never installed; scipy 1.9.3's newest wheels are for CPython 3.11.
PYTHON = "3.11"


def download(folder: Path) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON,
           "-d", str(folder), *REQUIREMENTS]
    subprocess.run(cmd, check=True)
    return sorted(folder.glob("*.whl"))


def members(z: zipfile.ZipFile, wheel: str, table: dict[str, list[str]], out: Path | None) -> list[Path]:
    if out is None:
        return []
    return [atomic_write(out / Path(member).name, z.read(member), make_parents=True)
            for prefix, names in table.items() if wheel.lower().startswith(prefix + "-") for member in names]


def extract(wheels: list[Path], out: Path, held_out: Path | None, fresh: Path | None) -> list[Path]:
    written = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            written += members(z, wheel.name, TRAIN, out) + members(z, wheel.name, FRESH, fresh)
            if held_out is not None and wheel.name.startswith("scipy-"):
                written.append(face(z.read("scipy/misc/face.dat"), held_out / "face.png"))
    return written


def face(data: bytes, path: Path) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.frombuffer(bz2.decompress(data), dtype=np.uint8).reshape(768, 1024, 3)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")  # a real photo: not guided.io's save_image, which labels AI output
    return atomic_write(path, png.getvalue(), make_parents=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the training photos")
    ap.add_argument("--held-out", type=Path, help="folder for the held-out photo face.png")
    ap.add_argument("--fresh", type=Path, help="folder for the photos kept out of training and of every choice")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in extract(download(Path(tmp)), args.out, args.held_out, args.fresh):
            print(path)


if __name__ == "__main__":
    main()
