"""Write a corpus of bad (and a few good) image inputs, each with the outcome ingest must give it.

Everything is generated here, so no binary file is committed. ``make_corpus(dest)`` writes the
image root ``dest/images`` and a folder outside it, ``dest/outside``, and returns one ``Case`` per
input. Run ``python tests/data/make_corpus.py DEST`` to get the files for a manual look.

Outcomes (what ``pipeline.ingest.ingest_folder`` reports for the case's path):
- "item": enters the pool; ``size`` is its (width, height) after ``open_image``;
- "quarantined": recorded with a reason that contains ``reason``;
- "ignored": not an image extension;
- "link not followed": a link to a folder, reported and not walked (loops cannot trap the walk);
- "unreadable folder": the walk could not list it; ``reason`` is in its error.
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

OUTCOMES = ("item", "quarantined", "ignored", "link not followed", "unreadable folder")
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Case:
    """One input: ``name`` is its path under the image root (``str``: a name that is not UTF-8
    holds surrogate escapes, as ``os.listdir`` returns it)."""

    name: str
    what: str
    outcome: str
    reason: str = ""  # for "quarantined" and "unreadable folder": a substring of the reason
    size: tuple[int, int] | None = None  # for "item": (width, height) once decoded
    mode: str | None = None  # for "item": the mode Pillow reports for the file before decoding


def make_corpus(dest: Path) -> list[Case]:
    """Write the corpus under ``dest`` (which must not hold one already); return its cases."""
    root = Path(dest) / "images"
    outside = Path(dest) / "outside"
    root.mkdir(parents=True)
    outside.mkdir()
    rng = np.random.default_rng(6)
    cases: list[Case] = []

    def image(name: str, what: str, img: Image.Image, fmt: str, *, size=None, **save) -> None:
        write_file(root / name, encoded(img, fmt, **save))
        cases.append(Case(name, what, "item", size=size or img.size, mode=img.mode))

    def bad(name: str, what: str, data: bytes, reason: str) -> None:
        write_file(root / name, data)
        cases.append(Case(name, what, "quarantined", reason))

    def noise(*shape: int) -> np.ndarray:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)

    # Good files: distinct pixels, so none is a duplicate of another.
    image("good/rgb.png", "good RGB PNG", Image.fromarray(noise(24, 32, 3)), "PNG")
    image("good/gray.png", "good grayscale PNG", Image.fromarray(noise(20, 16)), "PNG")
    image("good/photo.jpg", "good JPEG", Image.fromarray(noise(32, 24, 3)), "JPEG")
    image("good/PHOTO2.JPEG", "good JPEG, upper-case extension",
          Image.fromarray(noise(16, 16, 3)), "JPEG")
    image("good/café [1] (copy).png", "name with spaces, brackets and accents",
          Image.fromarray(noise(8, 8, 3)), "PNG")

    good_png = encoded(Image.fromarray(noise(40, 40, 3)), "PNG")
    good_jpeg = encoded(Image.fromarray(noise(40, 40, 3)), "JPEG")
    bad("bad/empty.png", "zero-byte file", b"", "empty file")
    bad("bad/truncated.png", "truncated PNG", good_png[: len(good_png) // 2], "truncated")
    bad("bad/truncated.jpg", "truncated JPEG", good_jpeg[: len(good_jpeg) // 2], "truncated")
    image("odd/png_named.jpg", "PNG named .jpg (decodes, so accepted)",
          Image.fromarray(noise(10, 14, 3)), "PNG")
    bad("bad/text.png", "text file named .png", b"just some notes\n", "not an image")
    bad("bad/random.png", "random bytes named .png", rng.bytes(4096), "not an image")
    bad("bad/page.jpg", "HTML page named .jpg",
        b"<!doctype html><html><body>404 Not Found</body></html>\n", "not an image")
    bad("bad/bomb.png", "20,000 x 20,000 PNG (decompression bomb)",
        bomb_png(20_000, 20_000), "decompression bomb")

    image("odd/one_pixel.png", "1x1 image", Image.fromarray(noise(1, 1, 3)), "PNG")
    sixteen = rng.integers(0, 65_536, size=(12, 30)).astype(np.uint16)
    image("odd/sixteen.png", "16-bit grayscale PNG", Image.fromarray(sixteen), "PNG")
    image("odd/cmyk.jpg", "CMYK JPEG", Image.fromarray(noise(12, 30, 3)).convert("CMYK"), "JPEG")
    image("odd/palette.png", "palette PNG with transparency",
          Image.fromarray(noise(12, 30)).convert("P"), "PNG", transparency=0)
    exif = Image.Exif()
    exif[_EXIF_ORIENTATION] = 6  # rotate 90 degrees to display: width and height swap
    image("odd/rotated.jpg", "EXIF-rotated JPEG (orientation 6)",
          Image.fromarray(noise(10, 20, 3)), "JPEG", size=(10, 20), exif=exif)

    write_file(root / "notes.txt", b"not an image extension\n")
    cases.append(Case("notes.txt", "text file without an image extension", "ignored"))

    cases += _links(root, outside, good_png)
    cases += _special(root, good_png, noise)
    return cases


def _links(root: Path, outside: Path, outside_bytes: bytes) -> list[Case]:
    links = root / "links"
    links.mkdir()
    os.symlink("..", links / "up")  # a folder link to its own parent: a loop if followed
    os.symlink("b.png", links / "a.png")  # two file links pointing at each other
    os.symlink("a.png", links / "b.png")
    os.symlink("gone.png", links / "dangling.png")
    write_file(outside / "x.png", outside_bytes)  # a good image, but not under the image root
    os.symlink(outside / "x.png", links / "outside.png")
    return [
        Case("links/up", "folder link to its parent (loop)", "link not followed"),
        Case("links/a.png", "file link loop (a -> b)", "quarantined", "symbolic link loop"),
        Case("links/b.png", "file link loop (b -> a)", "quarantined", "symbolic link loop"),
        Case("links/dangling.png", "dangling symbolic link", "quarantined",
             "broken symbolic link"),
        Case("links/outside.png", "link to an image outside the image root", "quarantined",
             "link points outside the folder read"),
    ]


def _special(root: Path, png: bytes, noise) -> list[Case]:
    """Permissions, a named pipe and names that are not UTF-8."""
    cases = []
    locked = write_file(root / "perm/locked.png", encoded(Image.fromarray(noise(6, 9, 3)), "PNG"))
    locked.chmod(0)
    # chmod does not stop root (CAP_DAC_OVERRIDE): the expected outcome follows what the
    # process can actually do, so the case is run either way and never skipped.
    if os.access(locked, os.R_OK):
        cases.append(Case("perm/locked.png", "file without read permission", "item",
                          size=(9, 6), mode="RGB"))
    else:
        cases.append(Case("perm/locked.png", "file without read permission", "quarantined",
                          "Permission denied"))
    private = root / "perm/private"
    write_file(private / "inside.png", encoded(Image.fromarray(noise(7, 5, 3)), "PNG"))
    private.chmod(0)
    if os.access(private, os.R_OK | os.X_OK):
        cases.append(Case("perm/private/inside.png", "folder without read permission", "item",
                          size=(5, 7), mode="RGB"))
    else:
        cases.append(Case("perm/private", "folder without read permission",
                          "unreadable folder", "Permission denied"))

    os.mkfifo(root / "odd/pipe.png")  # opening it for reading would wait for a writer forever
    cases.append(Case("odd/pipe.png", "named pipe with an image extension", "quarantined",
                      "not a regular file"))

    # Created through bytes paths: a str path cannot hold these bytes except as surrogates.
    raw_root = os.fsencode(root)
    for raw, what in [(b"bad-\xff\xfe.png", "file name not valid UTF-8 (good image)"),
                      (b"dir-\xe9/inside.png", "folder name not valid UTF-8 (good image)")]:
        path = raw_root + b"/" + raw
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(encoded(Image.fromarray(noise(4, 4, 3)), "PNG"))
        cases.append(Case(os.fsdecode(raw), what, "quarantined", "file name is not valid UTF-8"))
    return cases


def encoded(img: Image.Image, fmt: str, **save) -> bytes:
    """``img`` saved in ``fmt`` (Pillow's format name), as bytes."""
    buffer = io.BytesIO()
    img.save(buffer, fmt, **save)
    return buffer.getvalue()


def write_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, making its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG: ~50 kB on disk, width*height pixels once decoded.

    Written row by row, so making it takes one row of memory; a real image (not a lying header)
    means only the size guard can stop it."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="folder to create (images/ and outside/ in it)")
    cases = make_corpus(parser.parse_args().dest)
    for case in cases:
        detail = case.reason or (f"{case.size[0]}x{case.size[1]}" if case.size else "")
        shown = os.fsencode(case.name).decode("utf-8", "backslashreplace")
        print(f"{shown:40} {case.outcome:18} {detail:30} {case.what}")
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main()
