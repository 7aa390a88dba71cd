"""Open an image file fully decoded and in the mode a model needs, or say why it can't be.

Everything that reads pixels (ingest, training, prediction) goes through ``open_image`` so that a
file accepted at ingest is a file the model can read. A path may name an S3 object
(``s3://bucket/key``): its bytes are read through ``training.sources``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from training.sources import is_remote, read_bytes

# Pillow's own default; above it a file is treated as a decompression bomb.
DEFAULT_MAX_PIXELS = 89_478_485
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """The file is not an image the model can use; ``str(err)`` is the reason for the user."""


def open_image(
    path: str | Path, *, channels: int = 3, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Return the image at ``path`` (a file, or an ``s3://`` object) decoded, EXIF-rotated and
    converted to L (1) or RGB (3).

    Raises ``ImageError`` with a one-line reason for: empty files, non-images, truncated or
    corrupt data, images over ``max_pixels`` (decompression bombs) and unreadable files.
    ``training.sources.RemoteUnavailable`` (S3 cannot be used at all) is no property of the
    image and passes through.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if is_remote(path):
        try:
            data = read_bytes(path)
        except OSError as err:
            raise _unreadable(err, missing="object not found", other="unreadable") from None
        return decode_image(data, channels=channels, max_pixels=max_pixels)
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
    except OSError as err:
        raise _unreadable(err) from None
    return _decoded(path, channels, max_pixels)


def _unreadable(err: OSError, *, missing: str = "file not found",
                other: str = "corrupt or truncated image") -> ImageError:
    """The one-line reason for an ``OSError`` met while reading an image. Pillow reports
    truncated and corrupt data as OSError ("image file is truncated")."""
    if isinstance(err, PermissionError):
        return ImageError("permission denied")
    if isinstance(err, FileNotFoundError):
        return ImageError(missing)
    return ImageError(f"{other}: {err}")


def decode_image(data: bytes, *, channels: int = 3,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """``open_image`` for bytes already read (ingest hashes an object's bytes and decodes the
    same bytes, so an S3 object is fetched once)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not data:
        raise ImageError("empty file (0 bytes)")
    return _decoded(io.BytesIO(data), channels, max_pixels)


def _decoded(source: Path | io.BytesIO, channels: int, max_pixels: int) -> Image.Image:
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        # Pillow refuses twice its own limit while reading the header, whatever ours is: a
        # larger limit asked for (ingest --max-pixels) raises Pillow's to it. Ours is checked
        # below, before any pixel is decoded.
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # Pillow warns from the header above its limit; ours decides, below, with a reason.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
        with img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image too large: {width}x{height} = {width * height:,} pixels "
                    f"(limit {max_pixels:,}; possible decompression bomb)"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
            # In place: the default returns a copy even when there is nothing to rotate.
            ImageOps.exif_transpose(img, in_place=True)
            return _convert(img, channels)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"decompression bomb guard: {err}") from None
    except OSError as err:
        raise _unreadable(err) from None
    except (SyntaxError, ValueError) as err:
        raise ImageError(f"corrupt image: {err}") from None


def _convert(img: Image.Image, channels: int) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float images: rescale to 8 bits by the image's own range.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels are composited on white, as viewers show them.
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    target = "L" if channels == 1 else "RGB"
    return img.convert(target) if img.mode != target else img


def is_image_path(path: Path) -> bool:
    """Whether the file name has an image extension (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS
