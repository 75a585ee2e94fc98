"""Image I/O: every bad input gets a one-line error naming the file; saves are atomic and labelled."""
from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import noise
from PIL import Image, PngImagePlugin, features

from guided.errors import GuidedError, ImageLoadError, NonFiniteError
from guided.io.images import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_SIDE,
    load_image,
    pil_to_tensor,
    read_metadata,
    save_image,
    sidecar_path,
    tensor_to_pil,
)


def noisy(size=(64, 48), seed=0) -> Image.Image:
    return noise(seed, size)


def assert_one_line_naming(exc: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert path.name in message, message
    for word in words:
        assert word in message, message


# ------------------------------------------------------------------------------------ bad files
def test_defaults_are_documented_values():
    assert set(ALLOWED_FORMATS) == {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"}
    assert DEFAULT_MAX_SIDE == 4096


def test_good_jpeg_loads_as_rgb(tmp_path):
    path = tmp_path / "photo.jpg"
    noisy().save(path, quality=95)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (64, 48)


def test_truncated_jpeg_names_the_file(tmp_path):
    path = tmp_path / "cut.jpg"
    buffer = io.BytesIO()
    noisy((256, 256)).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageLoadError) as exc:
        load_image(path, what="style image")
    assert_one_line_naming(exc, path, "style image", "truncated")


def test_truncated_png_names_the_file(tmp_path):
    path = tmp_path / "cut.png"
    buffer = io.BytesIO()
    noisy((128, 128)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    assert_one_line_naming(exc, path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError) as exc:
        load_image(path, what="content image")
    assert_one_line_naming(exc, path, "content image", "empty")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    assert_one_line_naming(exc, path, "not a readable image")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError) as exc:
        load_image(tmp_path / "nope.jpg")
    assert_one_line_naming(exc, tmp_path / "nope.jpg", "does not exist")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(ImageLoadError) as exc:
        load_image(folder)
    assert_one_line_naming(exc, folder, "directory")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_png_header_claiming_a_huge_size_is_a_bomb(tmp_path):
    path = tmp_path / "bomb.png"
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)  # 10^10 pixels, RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                     + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageLoadError) as exc:
        load_image(path, max_side=None)
    assert_one_line_naming(exc, path, "decompression bomb")


def test_decompression_bomb_warning_is_an_error(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    noisy((40, 40)).save(path)  # 1600 pixels: above the limit below, under twice it -> a warning
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    assert_one_line_naming(exc, path, "decompression bomb")


def test_image_larger_than_max_side_is_refused_not_resized(tmp_path):
    path = tmp_path / "wide.png"
    noisy((300, 200)).save(path)
    with pytest.raises(ImageLoadError) as exc:
        load_image(path, max_side=256)
    assert_one_line_naming(exc, path, "300x200", "max_side", "256")
    assert load_image(path, max_side=None).size == (300, 200)
    assert load_image(path, max_side=300).size == (300, 200)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_max_side_must_be_positive_int(tmp_path, bad):
    with pytest.raises(ValueError, match="max_side"):
        load_image(noisy(), max_side=bad)


def test_disallowed_format_is_named(tmp_path):
    path = tmp_path / "image.ppm"
    noisy().save(path)  # PPM: a real image, but not in the allowlist
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    assert_one_line_naming(exc, path, "PPM", "allowed formats")
    jpeg = tmp_path / "photo.jpg"
    noisy().save(jpeg)
    with pytest.raises(ImageLoadError) as exc:
        load_image(jpeg, formats=("PNG",))
    assert_one_line_naming(exc, jpeg, "JPEG", "PNG")


# ------------------------------------------------------------------------------------ modes
def test_rgba_is_composited_on_white(tmp_path):
    path = tmp_path / "rgba.png"
    data = np.zeros((2, 2, 4), dtype=np.uint8)
    data[0, 0] = (255, 0, 0, 255)  # opaque red
    data[0, 1] = (255, 0, 0, 128)  # half-transparent red
    data[1, 0] = (0, 0, 0, 0)  # fully transparent black
    data[1, 1] = (0, 0, 255, 255)
    Image.fromarray(data, "RGBA").save(path)
    out = np.asarray(load_image(path)).astype(int)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1, 0] == 255 and abs(out[0, 1, 1] - 127) <= 1 and abs(out[0, 1, 2] - 127) <= 1
    assert out[1, 0].tolist() == [255, 255, 255]
    assert out[1, 1].tolist() == [0, 0, 255]


def test_la_is_composited_on_white():
    image = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), "LA")
    assert np.asarray(load_image(image)).tolist() == [[[255, 255, 255], [0, 0, 0]]]


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    path = tmp_path / "palette.png"
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    image.putdata([0, 1])
    image.save(path, transparency=0)  # index 0 (black) is transparent
    out = np.asarray(load_image(path)).tolist()
    assert out == [[[255, 255, 255], [0, 200, 0]]]


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    data = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(data).save(path)
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_image(path))
    assert out[0, :, 0].tolist() == [0, 64, 128, 255]  # clipping would give 0, 255, 255, 255
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_float_and_int32_modes_are_scaled():
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert np.asarray(load_image(floats))[0, :, 0].tolist() == [0, 128, 255]
    ints = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), "I")
    assert np.asarray(load_image(ints))[0, :, 0].tolist() == [0, 255]


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grey_and_bilevel_become_rgb(tmp_path, mode):
    path = tmp_path / f"{mode}.png"
    Image.new(mode, (3, 2), 255 if mode == "L" else 1).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and np.asarray(image).min() == 255


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=100)  # pure red ink
    assert Image.open(path).mode == "CMYK"
    red = np.asarray(load_image(path)).astype(int).mean(axis=(0, 1))
    assert red[0] > 230 and red[1] < 30 and red[2] < 30


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    data = np.zeros((20, 40, 3), dtype=np.uint8)
    data[:, :20] = (255, 0, 0)  # left half red
    data[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(data).save(path, quality=95, exif=exif)
    image = load_image(path)
    assert image.size == (20, 40)  # width and height swapped
    out = np.asarray(image).astype(int)
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60  # top is the former left: red
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60  # bottom: blue


def test_animated_gif_gives_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(path), "n_frames", 1) == 2
    out = np.asarray(load_image(path)).astype(int)
    assert out[..., 0].min() > 240 and out[..., 2].max() < 15


def test_pil_input_is_converted_and_size_checked():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(load_image(rgba)).min() == 255
    with pytest.raises(ImageLoadError, match="max_side"):
        load_image(Image.new("RGB", (50, 10)), max_side=20, what="style image")
    original = Image.new("RGB", (4, 4), (1, 2, 3))
    loaded = load_image(original)
    loaded.putpixel((0, 0), (9, 9, 9))
    assert original.getpixel((0, 0)) == (1, 2, 3)  # a copy, not the caller's image


# ---------------------------------------------------------------------------------- tensors
def test_tensor_round_trip_and_range():
    image = noisy((10, 7))
    tensor = pil_to_tensor(image)
    assert tensor.shape == (1, 3, 7, 10) and tensor.dtype == torch.float32
    assert 0 <= tensor.min() and tensor.max() <= 1
    assert np.array_equal(np.asarray(tensor_to_pil(tensor)), np.asarray(image))


def test_tensor_to_pil_clamps_and_takes_first_of_batch():
    batch = torch.stack([torch.full((3, 2, 2), 2.0), torch.full((3, 2, 2), -1.0)])
    assert np.asarray(tensor_to_pil(batch)).min() == 255
    assert np.asarray(tensor_to_pil(batch[1])).max() == 0


def test_tensor_to_pil_rejects_nan_and_bad_shapes():
    with pytest.raises(NonFiniteError):
        tensor_to_pil(torch.full((1, 3, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        tensor_to_pil(torch.zeros(1, 1, 2, 2))


# ------------------------------------------------------------------------------------- save
METADATA = {"kind": "test", "seed": 3, "prompt": "水墨画 of a mountain", "losses": {"gram": [1.5, 0.5]}}


def test_png_metadata_round_trip_chunk_and_sidecar(tmp_path):
    path = save_image(noisy(), tmp_path / "out.png", metadata=METADATA)
    assert path == tmp_path / "out.png"
    with Image.open(path) as image:
        text = image.text
        assert json.loads(text["guided"]) == METADATA
        assert text["ai_generated"] == "true"
        assert "trainedAlgorithmicMedia" in text["DigitalSourceType"]
        assert "trainedAlgorithmicMedia" in text["XML:com.adobe.xmp"]
        assert "AI-generated" in text["Description"] and text["Software"].startswith("guided")
    side = sidecar_path(path)
    assert side == tmp_path / "out.png.json"
    assert json.loads(side.read_text(encoding="utf-8")) == METADATA
    assert read_metadata(path) == METADATA
    assert read_metadata(side) == METADATA
    side.unlink()
    assert read_metadata(path) == METADATA  # the chunk alone suffices


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp"])
def test_lossy_formats_keep_metadata_in_the_sidecar(tmp_path, suffix):
    if suffix == ".webp" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    path = save_image(noisy(), tmp_path / f"out{suffix}", metadata=METADATA)
    assert read_metadata(path) == METADATA
    assert (tmp_path / f"out{suffix}.json").is_file()
    with Image.open(path) as image:
        assert b"trainedAlgorithmicMedia" in image.info["xmp"]
    with pytest.raises(GuidedError, match="sidecar"):
        save_image(noisy(), tmp_path / f"other{suffix}", metadata=METADATA, sidecar=False)
    assert not (tmp_path / f"other{suffix}").exists()


def test_sidecar_false_writes_only_the_png(tmp_path):
    save_image(noisy(), tmp_path / "out.png", metadata=METADATA, sidecar=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    assert read_metadata(tmp_path / "out.png") == METADATA


def test_metadata_too_large_for_a_png_chunk_goes_to_the_sidecar(tmp_path, monkeypatch):
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_CHUNK", 2000)  # Pillow's read limit, made small
    big = {"losses": list(range(1000))}
    path = save_image(noisy(), tmp_path / "out.png", metadata=big)
    with Image.open(path) as image:  # still opens under the read limit
        assert "guided" not in image.text and image.text["ai_generated"] == "true"
    assert read_metadata(path) == big  # from the sidecar
    with pytest.raises(GuidedError, match="too large"):
        save_image(noisy(), tmp_path / "other.png", metadata=big, sidecar=False)


def test_bad_suffix_is_refused_before_writing(tmp_path):
    with pytest.raises(GuidedError) as exc:
        save_image(noisy(), tmp_path / "out.gif")
    assert "out.gif" in str(exc.value) and ".png" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("metadata", [{"path": Path("/x")}, {"loss": float("nan")}, {"o": object()}])
def test_unserialisable_metadata_writes_nothing(tmp_path, metadata):
    with pytest.raises(GuidedError) as exc:
        save_image(noisy(), tmp_path / "out.png", metadata=metadata)
    assert "out.png" in str(exc.value) and "JSON" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_parent_folder_is_created(tmp_path):
    path = save_image(noisy(), tmp_path / "a" / "b" / "out.png")
    assert load_image(path).size == (64, 48)


def test_parent_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(GuidedError, match="not a folder"):
        save_image(noisy(), tmp_path / "file" / "out.png")


def test_saved_file_permissions_follow_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        path = save_image(noisy(), tmp_path / "out.png", metadata=METADATA)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert sidecar_path(path).stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_interrupted_save_leaves_no_partial_file(tmp_path, monkeypatch, error):
    target = tmp_path / "out.png"
    save_image(noisy(seed=1), target, metadata={"old": True})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG\r\n\x1a\n partial bytes")  # half a file, then the interruption
        raise error("interrupted mid-save")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(error):
        save_image(noisy(seed=2), target, metadata={"old": False})
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # no temp file, no partial file, the old image and sidecar untouched


def test_failed_rename_removes_both_temporary_files(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_image(noisy(), tmp_path / "out.png", metadata=METADATA)
    assert list(tmp_path.iterdir()) == []


def test_input_exif_and_gps_are_not_copied(tmp_path):
    source = tmp_path / "camera.jpg"
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x0110] = "SecretModel"  # Model
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)  # GPS latitude
    exif.get_ifd(0x8825)[1] = "N"
    noisy().save(source, exif=exif, quality=95)
    with Image.open(source) as original:
        assert original.getexif().get(0x010F) == "CameraMaker"  # the input really has EXIF
        original.load()
        for suffix in (".png", ".jpg"):
            out = save_image(original, tmp_path / f"out{suffix}", metadata=METADATA)
            raw = out.read_bytes()
            assert b"CameraMaker" not in raw and b"SecretModel" not in raw
            with Image.open(out) as saved:
                assert "exif" not in saved.info
                assert len(saved.getexif()) == 0


def test_stale_sidecar_is_removed_when_saving_without_metadata(tmp_path):
    path = save_image(noisy(), tmp_path / "out.jpg", metadata=METADATA)
    save_image(noisy(seed=5), path)
    assert not sidecar_path(path).exists()
    with pytest.raises(GuidedError, match="no guided metadata"):
        read_metadata(path)


# ------------------------------------------------------------------------------------- read
def test_read_metadata_errors_name_the_file(tmp_path):
    plain = tmp_path / "plain.png"
    noisy().save(plain)
    for path, words in ((plain, ("no guided metadata",)), (tmp_path / "gone.png", ("does not exist",))):
        with pytest.raises(GuidedError) as exc:
            read_metadata(path)
        assert_one_line_naming(exc, path, *words)
    text = tmp_path / "text.png"
    text.write_text("hello")
    with pytest.raises(GuidedError) as exc:
        read_metadata(text)
    assert_one_line_naming(exc, text)
    broken = tmp_path / "broken.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("guided", "{not json")
    noisy().save(broken, pnginfo=info)
    with pytest.raises(GuidedError) as exc:
        read_metadata(broken)
    assert_one_line_naming(exc, broken, "not valid JSON")
