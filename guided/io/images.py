"""Safe image input and output.

Loading turns any allowed file into an RGB PIL image, or raises `ImageLoadError` with one line that
names the file. Nothing is corrected silently: an image that is too large is refused, not resized.

Saving is atomic (a temporary file in the same folder, fsync, then `os.replace`), writes a fresh
image (the input's EXIF, GPS and ICC data are never copied) and labels the result as AI-generated:
in PNG text chunks, in an XMP packet (IPTC digital source type `trainedAlgorithmicMedia`) and in a
JSON sidecar `<image name>.json` (`out.png` -> `out.png.json`) holding the same metadata as the PNG
chunk `guided`.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

from guided import __version__
from guided.constants import SAVE_FORMATS
from guided.errors import GuidedError, ImageLoadError, NonFiniteError, one_line
from guided.io.files import fsync_dir, make_parent, write_temp

if TYPE_CHECKING:
    import torch

#: Pillow format names that `load_image` accepts by default: the common photo and painting formats.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")

#: Largest accepted side in pixels. Why 4096: every path in this project works at ≤ 1024 px, and a
#: 4096² RGB float32 tensor is already 200 MB; larger inputs are almost always a mistake (or a
#: decompression bomb just under Pillow's limit) and the user should downscale them knowingly.
DEFAULT_MAX_SIDE = 4096

#: PNG text-chunk key holding the JSON metadata (same content as the sidecar).
METADATA_KEY = "guided"
#: Machine-readable AI-generated marker: PNG text key and its value.
AI_MARKER_KEY = "ai_generated"
#: IPTC NewsCodes digital source type for media created by a trained generative model.
DIGITAL_SOURCE_TYPE = "trainedAlgorithmicMedia"
DIGITAL_SOURCE_TYPE_URI = f"http://cv.iptc.org/newscodes/digitalsourcetype/{DIGITAL_SOURCE_TYPE}"

#: Modes each output format can store without a conversion we would have to make silently.
_SAVE_MODES = {"PNG": {"RGB", "RGBA", "L", "LA"}, "JPEG": {"RGB", "L"}, "WEBP": {"RGB", "RGBA"}}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}


# --------------------------------------------------------------------------------------------- load
def describe_source(source) -> str:
    """How a manifest names an image input: its path, or `<PIL image>` for one passed in memory."""
    return "<PIL image>" if isinstance(source, Image.Image) else str(source)


def load_image(source: str | Path | Image.Image, *, max_side: int | None = DEFAULT_MAX_SIDE,
               formats: Iterable[str] = ALLOWED_FORMATS, what: str = "image") -> Image.Image:
    """Read `source` (a path or a PIL image) as an RGB image with EXIF orientation applied.

    Transparency is composited on white; 16-bit and float images are scaled to 8 bits by their
    range (not clipped); animations give their first frame. Raises `ImageLoadError` naming the file
    for a missing, empty, corrupt, truncated, disallowed, oversized or decompression-bomb input.
    """
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int)
                                 or max_side <= 0):
        raise ValueError(f"`max_side` must be a positive int or None, got {max_side!r}")
    if isinstance(source, Image.Image):
        return _convert_loaded(source, label=f"{what} (in memory)", max_side=max_side)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"`source` must be a path or a PIL image, got {type(source).__name__}")
    path = Path(source).expanduser()
    label = f"{what} '{source}'"
    _check_file(path, label)
    allowed = tuple(f.upper() for f in formats)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, on every path
    except OSError as exc:
        raise ImageLoadError(f"{label} cannot be opened: {one_line(exc)}") from None
    with handle, warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we refuse both.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(handle, formats=allowed)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageLoadError(f"{label} looks like a decompression bomb: {one_line(exc)}") from None
        except Image.UnidentifiedImageError:
            raise ImageLoadError(_unidentified_message(path, label, allowed)) from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad headers
            raise ImageLoadError(f"{label} could not be read: {one_line(exc)}") from None
        _check_size(image.size, label, max_side)
        try:
            image.seek(0)  # animations: the first frame
            image.load()  # a full decode here, so truncation is caught now, not later
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageLoadError(f"{label} looks like a decompression bomb: {one_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file
            kind = "is truncated" if "truncated" in str(exc).lower() else "is corrupt"
            raise ImageLoadError(f"{label} {kind} and could not be decoded "
                                 f"({image.format}: {one_line(exc)})") from None
        return _convert_loaded(image, label=label, max_side=None)


def _check_file(path: Path, label: str) -> None:
    if not path.exists():
        raise ImageLoadError(f"{label} does not exist")
    if path.is_dir():
        raise ImageLoadError(f"{label} is a directory, not an image file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageLoadError(f"{label} cannot be read: {one_line(exc)}") from None
    if size == 0:
        raise ImageLoadError(f"{label} is empty (0 bytes)")


def _unidentified_message(path: Path, label: str, allowed: tuple[str, ...]) -> str:
    """Tell a disallowed format apart from a file that is no image at all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as probe:
                actual = probe.format
    except Exception:  # noqa: BLE001 - any failure here means "not an image"
        actual = None
    if actual and actual not in allowed:
        return f"{label} is a {actual} image; allowed formats: {', '.join(allowed)}"
    return f"{label} is not a readable image (allowed formats: {', '.join(allowed)})"


def _check_size(size: tuple[int, int], label: str, max_side: int | None) -> None:
    if max_side is not None and max(size) > max_side:
        raise ImageLoadError(
            f"{label} is {size[0]}x{size[1]} pixels, larger than the maximum side of {max_side} "
            f"(option `max_side`, --max-side); downscale it or raise that limit")


def _convert_loaded(image: Image.Image, *, label: str, max_side: int | None) -> Image.Image:
    _check_size(image.size, label, max_side)
    try:
        image.load()
        oriented = ImageOps.exif_transpose(image)
        return to_rgb(oriented)
    except ImageLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - unusual modes and broken EXIF end here
        raise ImageLoadError(f"{label} could not be converted to RGB: {one_line(exc)}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB image: alpha composited on white, high bit depths scaled by their range."""
    mode = image.mode
    if mode in _ALPHA_MODES or (mode in {"P", "L", "RGB"} and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _SIXTEEN_BIT or mode in {"I", "F"}:
        return Image.fromarray(_scale_to_uint8(image), mode="L").convert("RGB")
    if mode == "RGB":
        return image.copy()
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def _scale_to_uint8(image: Image.Image) -> np.ndarray:
    """16-bit -> /65535; 32-bit int within 0..65535 (how Pillow holds 16-bit samples) likewise;
    float within [0, 1] -> x255; any other range -> min-max. Never clipped."""
    data = np.asarray(image).astype(np.float64)
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if image.mode in _SIXTEEN_BIT or (image.mode == "I" and lo >= 0 and hi <= 65535):
        scaled = data / 65535.0
    elif image.mode == "F" and lo >= 0 and hi <= 1:
        scaled = data
    else:
        scaled = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
    return np.round(scaled * 255.0).astype(np.uint8)


# ------------------------------------------------------------------------------------ tensors
def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a float32 tensor of shape (1, 3, H, W) in [0, 1]."""
    import torch

    array = np.asarray(to_rgb(image) if image.mode != "RGB" else image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """The first image of a (N, 3, H, W) or (3, H, W) tensor in [0, 1] (clamped) as RGB PIL.

    A tensor with NaN or inf raises `NonFiniteError`: a broken image is never saved quietly."""
    import torch

    if tensor.dim() == 4:
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"`tensor` must have shape (N, 3, H, W) or (3, H, W), got {tuple(tensor.shape)}")
    tensor = tensor.detach().to("cpu", torch.float32)
    if not torch.isfinite(tensor).all():
        raise NonFiniteError("image tensor contains NaN or inf values; refusing to turn it into an image")
    array = tensor.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array, mode="RGB")


# --------------------------------------------------------------------------------------------- save
def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of an image: the full file name plus `.json` (`out.png` -> `out.png.json`),
    so `a.png` and `a.jpg` never share one."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def save_image(image: Image.Image, path: str | Path, *, metadata: dict | None = None,
               sidecar: bool = True) -> Path:
    """Write `image` atomically to `path` (.png, .jpg, .jpeg or .webp) and return the path.

    `metadata` (a JSON-serialisable dict) goes into the PNG text chunk `guided` and, when
    `sidecar`, into `<path>.json` (.jpg/.webp, and metadata over half a megabyte: sidecar only).
    The image is always labelled AI-generated. A stale sidecar of an earlier image at `path` is
    removed when no new metadata is written, so it cannot mislead.
    """
    path = Path(path).expanduser()
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise GuidedError(f"cannot save '{path}': the file name must end in "
                          f"{', '.join(SAVE_FORMATS)}")
    if not isinstance(image, Image.Image):
        raise TypeError(f"`image` must be a PIL image, got {type(image).__name__}")
    if image.mode not in _SAVE_MODES[fmt]:
        raise GuidedError(f"cannot save a {image.mode} image as '{path}'; convert it to RGB first")
    text = _metadata_json(metadata, path)
    in_file = text is not None and fmt == "PNG" and _fits_png_chunk(text)
    if text is not None and not in_file and not sidecar:
        why = "is too large for a PNG text chunk" if fmt == "PNG" else "cannot go inside this format"
        raise GuidedError(f"metadata for '{path}' {why}; pass sidecar=True or save as .png")
    if path.is_dir():
        raise GuidedError(f"cannot save to '{path}': it is a directory")
    make_parent(path)

    fresh = Image.frombytes(image.mode, image.size, image.tobytes())  # no EXIF/GPS/ICC carried over
    options = _save_options(fmt, text if in_file else None)
    side = sidecar_path(path)
    temps: list[Path] = []
    try:
        image_tmp = write_temp(path, lambda fh: fresh.save(fh, format=fmt, **options))
        temps.append(image_tmp)
        side_tmp = None
        if text is not None and sidecar:
            side_tmp = write_temp(side, lambda fh: fh.write(text.encode("utf-8") + b"\n"))
            temps.append(side_tmp)
        os.replace(image_tmp, path)
        temps.remove(image_tmp)
        if side_tmp is not None:
            os.replace(side_tmp, side)
            temps.remove(side_tmp)
        elif side.is_file():
            side.unlink()  # described the image we just replaced
        fsync_dir(path.parent)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    return path


def _metadata_json(metadata: dict | None, path: Path) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise GuidedError(f"metadata for '{path}' must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(metadata, ensure_ascii=False, allow_nan=False, indent=1)
    except (TypeError, ValueError) as exc:
        raise GuidedError(f"metadata for '{path}' is not JSON-serialisable ({one_line(exc)}); "
                          f"pass it through guided.io.manifest.json_safe") from None


def _fits_png_chunk(text: str) -> bool:
    """Pillow refuses to open a PNG whose text chunk inflates beyond `MAX_TEXT_CHUNK` (1 MB), so
    larger metadata (very long loss traces) goes to the sidecar only: the image stays readable."""
    return len(text.encode("utf-8")) <= PngImagePlugin.MAX_TEXT_CHUNK // 2


def _save_options(fmt: str, text: str | None) -> dict:
    xmp = _xmp_packet().encode("utf-8")
    if fmt == "JPEG":
        return {"quality": 95, "xmp": xmp}
    if fmt == "WEBP":
        return {"quality": 95, "xmp": xmp}
    info = PngImagePlugin.PngInfo()
    info.add_text(AI_MARKER_KEY, "true")
    info.add_text("DigitalSourceType", DIGITAL_SOURCE_TYPE_URI)
    info.add_text("Software", f"guided {__version__}")
    info.add_text("Description", f"AI-generated image (IPTC digital source type: "
                                 f"{DIGITAL_SOURCE_TYPE}), made with guided {__version__}")
    info.add_itxt("XML:com.adobe.xmp", _xmp_packet())
    if text is not None:
        info.add_itxt(METADATA_KEY, text, zip=True)
    return {"pnginfo": info}


def _xmp_packet() -> str:
    """Minimal XMP declaring the IPTC digital source type, readable by standard metadata tools."""
    return ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
            f'Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE_URI}"/></rdf:RDF></x:xmpmeta>')


# --------------------------------------------------------------------------------------------- read
def read_metadata(path: str | Path) -> dict:
    """The metadata saved with an image: its PNG chunk `guided`, else its sidecar `<path>.json`.

    A `.json` path is read directly. Raises `GuidedError` naming the file when there is none."""
    path = Path(path).expanduser()
    if not path.exists():
        raise GuidedError(f"'{path}' does not exist")
    if path.is_dir():
        raise GuidedError(f"'{path}' is a directory, not an image")
    if path.suffix.lower() == ".json":
        return _read_json_file(path, path)
    text = _png_metadata(path)
    if text is not None:
        return _parse_metadata(text, f"the PNG chunk '{METADATA_KEY}' of '{path}'")
    side = sidecar_path(path)
    if side.is_file():
        return _read_json_file(side, path)
    raise GuidedError(f"'{path}' has no guided metadata (no PNG chunk '{METADATA_KEY}' and no "
                      f"sidecar '{side.name}')")


def _png_metadata(path: Path) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format != "PNG":
                    return None
                return image.text.get(METADATA_KEY)
    except Image.UnidentifiedImageError:
        raise GuidedError(f"'{path}' is not a readable image") from None
    except Exception as exc:  # noqa: BLE001 - a broken file is the user's to fix
        raise GuidedError(f"'{path}' could not be read: {one_line(exc)}") from None


def _read_json_file(side: Path, image: Path) -> dict:
    try:
        text = side.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GuidedError(f"metadata file '{side}' of '{image}' cannot be read: {one_line(exc)}") from None
    return _parse_metadata(text, f"'{side}'")


def _parse_metadata(text: str, where: str) -> dict:
    from guided.validate import json_object

    return json_object(text, f"metadata in {where}")
