"""Ingest a folder of images into the label store's pool.

Every image file is keyed by the SHA-256 of its bytes, so a copy under another name is the same
item. A new file is fully decoded with ``training.images.open_image`` (the same function training
and prediction use), so a file that enters the pool is one the model can read. A file that cannot
be read is quarantined with its reason; ingest never stops on a bad file.

Only files under the image folder are read: a link to a file elsewhere is quarantined, never
followed, and links to folders are listed and not walked. Paths are stored as text, so a name
that is not valid UTF-8 (which SQLite cannot hold) is quarantined under a shown form with
``\\xNN`` escapes.

The folder may be an S3 prefix (``s3://bucket/prefix``): its objects are listed, and each new
or changed one is read once (``training.sources``), keyed by its bytes and decoded from them.
An object is unchanged when its size, last-modified time and ETag are those of the listing that
read it. The endpoint and credentials are boto3's (``training.sources``).

Given a ``training.pixels.PixelKeeper``, the decoded pixels of each new item are kept at the
model's input size as the items are written, so that no later prediction decodes the file again
(``pipeline.round.predict``): the image is then opened with the model's channel count, as the
prediction path opens it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image
from rich.progress import track

from labeling.near_duplicates import THUMB_SIDE, assign_groups
from labeling.seen_files import (
    GONE,
    Stamp,
    forget_seen,
    item_paths_under,
    mark_gone,
    read_before,
    record_seen,
    seen_under,
    still_seen_copies,
)
from labeling.store import LabelStore, NewItem, bytes_key, file_key
from training.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageError,
    decode_image,
    open_image,
)
from training.sources import RemoteUnavailable, is_remote, list_objects, read_bytes, split_s3

if TYPE_CHECKING:  # torch comes with it: `labelloop ingest` without a keeper never loads it
    from training.pixels import PixelKeeper

# Items are written in batches so an interrupted ingest keeps most of its decoding work.
_WRITE_BATCH = 500


class IngestError(ValueError):
    """The folder cannot be ingested at all (missing, not a folder, no images in it; for an S3
    prefix also: bucket missing, no credentials, endpoint down)."""


class Rejected(NamedTuple):
    """A file or folder that did not enter the pool, and why."""

    path: str
    reason: str


class Duplicate(NamedTuple):
    """A file with the same bytes as another file of this run."""

    path: str
    same_as: str


@dataclass(frozen=True)
class IngestReport:
    """What one ``ingest_folder`` run did. Paths are resolved and absolute, and valid UTF-8:
    bytes of a name that are not are shown as ``\\xNN``."""

    root: Path | str  # a resolved folder, or an s3://bucket/prefix without a trailing /
    added: list[NewItem]
    already_present: list[str]  # same bytes as an item already in the store: skipped, no decode
    duplicates: list[Duplicate]  # same bytes as a file earlier in this run (which was added)
    quarantined: list[Rejected]  # recorded in the store with the reason
    released: list[str]  # were quarantined before; fine now, or deleted
    ignored: list[str]  # files without an image extension
    unreadable_dirs: list[Rejected]  # folders the walk could not list
    folder_links: list[str]  # links to folders: not walked, so their images were not read
    # Of already_present, the files not even read: unchanged since an earlier ingest read them.
    unread: int = 0
    # Why the pixel cache stopped being filled (a full disk, a read-only folder), if it did.
    pixels_not_kept: str | None = None
    # Of already_present, files whose item's old file is gone: renamed or moved. The item now
    # has this path, unless a Label Studio task shows the old one (then: not_moved).
    moved: list[str] = field(default_factory=list)
    not_moved: list[str] = field(default_factory=list)
    # Folders under the root whose name starts with a dot (the workspace, .git): not walked.
    hidden_folders: list[str] = field(default_factory=list)
    # Files that now hold other bytes than the item recorded at their path, whose own bytes are
    # nowhere in the folder (overwritten in place): that item keeps its labels, has no file.
    replaced: list[str] = field(default_factory=list)
    # Links to image files inside the folder: the file they name is read (once), not the link.
    file_links: list[str] = field(default_factory=list)


def ingest_folder(
    store: LabelStore,
    root: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
    reread: bool = False,
    keep_pixels: PixelKeeper | None = None,
) -> IngestReport:
    """Add every image under ``root`` (recursively) to ``store``; quarantine the bad ones.

    Files are picked by extension (``IMAGE_EXTENSIONS``, any case); others are ignored and
    counted. Symbolic links to folders are not followed, so link loops cannot trap the walk;
    they are listed in ``folder_links``. Files already in the store (same bytes) are skipped
    without decoding. Files that are empty, truncated, not images, larger than ``max_pixels``,
    unreadable, not regular files, links that are broken, loop or point outside ``root``, and
    names that are not UTF-8 are quarantined with their reason; a quarantined path that is
    fine now leaves the quarantine.

    Incremental: a file read by an earlier ingest and unchanged since (same size, modification
    and change time; ``labeling.seen_files``) is not read again and counts as already present.
    ``reread`` reads every file anyway (after a file system that does not keep those times).

    ``root`` may be an S3 prefix, ``s3://bucket/prefix`` (see the module docstring).

    ``keep_pixels``: where the new items' decoded pixels go, written with the items.

    Raises ``IngestError`` if ``root`` is missing, not a folder, or holds no image files, or
    if S3 cannot be used (the message says what to fix).
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise IngestError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if is_remote(str(root)):
        try:
            return _ingest(store, _check_prefix(str(root)), max_pixels, progress, reread,
                           keep_pixels)
        except RemoteUnavailable as err:
            raise IngestError(f"cannot ingest {root}: {err}") from None
    return _ingest(store, _check_root(root), max_pixels, progress, reread, keep_pixels)


def _ingest(store: LabelStore, root_path: Path | str, max_pixels: int, progress: bool,
            reread: bool, keep: PixelKeeper | None) -> IngestReport:
    remote = isinstance(root_path, str)
    listed_stamps: dict[str, Stamp] = {}
    if remote:
        found, listed_stamps = _list_prefix(root_path)
    else:
        found = _walk(root_path)
    if not found.images and not found.refused:
        # Every file gone at once is a folder emptied, moved or not mounted, more likely than
        # a pool deleted: the items are not marked gone, and the user is told where they were.
        had = 0 if remote else len(item_paths_under(store, str(root_path)))
        where = (f"; the pool's {had:,} item(s) had their files there: was the folder "
                 "emptied, moved or not mounted? Their labels stay; put the files back"
                 if had else "")
        raise IngestError(
            f"no image files under {root_path} (looked for {', '.join(IMAGE_EXTENSIONS)}, "
            f"any case; {len(found.others)} other file(s) ignored){where}"
        )
    was_quarantined = {q.path for q in store.quarantined()}
    refused = [_quarantine(store, path, reason) for path, reason in found.refused]
    seen = seen_under(store, str(root_path))
    to_read, unchanged, stamps = _changed(found.images, {} if reread else seen,
                                          listed_stamps if remote else None)
    # Of remote objects, the outcome of decoding their bytes, read once with the hash.
    decoded: dict[str, Decoded | str] = {}
    if remote:
        hashed, quarantined = _read_objects(store, to_read, progress, max_pixels, decoded, keep)
    else:
        hashed, quarantined = _hash_files(store, to_read, progress)
    quarantined = refused + quarantined
    known = store.existing_keys(key for _, key, _ in hashed)
    added: list[NewItem] = []
    already: list[str] = list(unchanged)
    duplicates: list[Duplicate] = []
    fine: list[str] = []  # every path whose bytes are a good image
    # Outcome of the first file with each key this run: its path, and the reason if it was bad.
    first: dict[str, tuple[str, str | None]] = {}
    pending: list[NewItem] = []
    thumbs: dict[str, bytes] = {}  # of the items this run adds, for near-duplicate groups
    elsewhere: dict[str, str] = {}  # key -> this run's path, of items already in the store
    pixels: dict[str, np.ndarray] = {}  # of the items pending a write, for keep_pixels
    cache_failed: list[str] = []  # why the pixel cache could not be written, once it could not
    for path, key, size in track(hashed, description="decoding", disable=not progress,
                                 transient=True):
        if key in known:
            already.append(path)
            fine.append(path)
            elsewhere[key] = path
            continue
        if key in first:
            same_as, reason = first[key]
            if reason is None:
                duplicates.append(Duplicate(path, same_as))
                fine.append(path)
            else:
                quarantined.append(_quarantine(store, path, reason, key))
            continue
        outcome = decoded.pop(path) if path in decoded else _decode(path, max_pixels, keep)
        if isinstance(outcome, str):
            first[key] = (path, outcome)
            quarantined.append(_quarantine(store, path, outcome, key))
            continue
        width, height, thumbs[key], kept = outcome
        if kept is not None:
            pixels[key] = kept
        first[key] = (path, None)
        pending.append(NewItem(key=key, path=path, size_bytes=size, width=width, height=height))
        fine.append(path)
        if len(pending) >= _WRITE_BATCH:
            added += _write(store, pending, keep, pixels, cache_failed)
    added += _write(store, pending, keep, pixels, cache_failed)
    record_thumbnails(store, {i.key: thumbs[i.key] for i in added})
    listed = set(found.images)
    gone_seen = [p for p in seen if p not in listed]
    now_holds = {path: key for path, key, _ in hashed}  # what each file read this run holds
    # Files read again whose bytes are no longer those an earlier ingest read there: path ->
    # the key they held.
    overwritten = {p: key for p, (_, key) in read_before(
        store, [p for p in now_holds if p in seen]).items()
        if key is not None and key != now_holds[p]}
    if not remote:
        # Where the bytes of a gone or overwritten file still are: only copies unchanged since
        # read, whose index key is then still their bytes' (a copy read again this run is in
        # `elsewhere` already, under its key of now).
        still = set(unchanged)
        for key, path in still_seen_copies(store, gone_seen + list(overwritten)).items():
            if path in still:
                elsewhere.setdefault(key, path)
    moved, not_moved, replaced = ([], [], []) if remote else _follow_moves(
        store, elsewhere, now_holds, overwritten)
    # Quarantined paths under root that are fine now, or gone, leave the quarantine. (add_items
    # already released the ones whose bytes were quarantined, so the list is computed here.)
    # A path quarantined again in this run stays: a name shown with \xNN escapes does not
    # exist under its shown form, yet the file is still there.
    again = {q.path for q in quarantined}
    if remote:
        gone = [p for p in was_quarantined
                if p.startswith(root_path + "/") and p not in again and p not in listed]
    else:
        # A "._" file quarantined before they were passed over stays on disk, never read now.
        gone = [p for p in was_quarantined if not is_remote(p) and Path(p).is_relative_to(
            root_path) and p not in again and (not os.path.lexists(p)
                                               or not _image_name(Path(p).name))]
    released = sorted({p for p in fine if p in was_quarantined}.union(gone))
    store.unquarantine(released)
    # Only files whose bytes are a good image in the store are marked read: a quarantined file
    # is read again next time (it may be fixed, or --max-pixels raised). Recorded last, so a
    # crash before this point costs a re-hash, never a missed file.
    good = set(fine)
    record_seen(store, {p: (stamps[p], key) for p, key, _ in hashed
                        if p in good and p in stamps})
    # Items whose file is not listed now (after the moves above): marked gone, once, so that
    # rounds leave them out; other files not listed leave the index.
    gone_items = {p for p in item_paths_under(store, str(root_path)) if p not in listed}
    forget_seen(store, [p for p in gone_seen if p not in gone_items])
    mark_gone(store, [p for p in sorted(gone_items) if seen.get(p) != GONE])
    return IngestReport(root_path, added, already, duplicates, quarantined, released,
                        found.others, found.unreadable, found.folder_links, len(unchanged),
                        cache_failed[0] if cache_failed else None, moved, not_moved,
                        hidden_folders=found.hidden, replaced=replaced,
                        file_links=found.file_links)


def _follow_moves(store: LabelStore, found: dict[str, str], now_holds: dict[str, str],
                  overwritten: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """(paths moved to, paths left, paths replaced). ``found``: key -> this run's path of items
    already in the store; ``now_holds``: path -> key of what this run read there;
    ``overwritten``: path -> key an earlier ingest read there, of the files that now hold other
    bytes.
    Moved: items whose stored file is gone, or now holds other bytes, and whose bytes this run
    found under another name: a file renamed, moved or swapped with another within the folder
    keeps its item, its labels and its place in the pool, under its new path
    (``LabelStore.move_items``). Replaced: an item's file overwritten in place with other bytes,
    its own bytes nowhere in the folder: the item keeps its labels, and export and rounds
    leave it out (``pipeline.export``, ``labeling.seen_files.replaced_items``) until its image
    is back."""
    stored = store.items_by_key(found)
    elsewhere = {k: p for k, p in found.items() if k in stored and stored[k].path != p
                 and not is_remote(stored[k].path)}
    # What a file not read this run holds: the key an earlier ingest read there (unchanged).
    indexed = read_before(store, [stored[k].path for k in elsewhere
                                  if stored[k].path not in now_holds])

    def not_there(path: str, key: str) -> bool:
        holds = now_holds[path] if path in now_holds else indexed.get(path, (None, None))[1]
        return not os.path.lexists(path) or holds not in (None, key)

    moves = {k: p for k, p in elsewhere.items() if not_there(stored[k].path, k)}
    lost: dict[str, set[str]] = {}  # old key found nowhere -> the paths that held it
    for p, old in overwritten.items():
        if old not in found:
            lost.setdefault(old, set()).add(p)
    replaced = sorted(item.path for key, item in store.items_by_key(lost).items()
                      if item.path in lost[key])
    if not moves:
        return [], [], replaced
    moved, left = store.move_items(moves)
    return sorted(moves[k] for k in moved), sorted(moves[k] for k in left), replaced


class Decoded(NamedTuple):
    """What ingest keeps of a good image: its size, thumbnail and (keep_pixels) model pixels."""

    width: int
    height: int
    thumbnail: bytes
    pixels: np.ndarray | None


def _decode(path: str, max_pixels: int, keep: PixelKeeper | None) -> Decoded | str:
    """What ingest keeps of a good image file, else the reason it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""  # open_image says why
    if (why := not_for_browsers(head)) is not None:
        return why
    try:
        with open_image(path, max_pixels=max_pixels, channels=_channels(keep)) as img:
            return _kept(img, keep)
    except ImageError as err:
        return str(err)


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # TIFF, BigTIFF


def not_for_browsers(head: bytes) -> str | None:
    """Why an image whose file starts with ``head`` cannot go to annotators, or None. Web
    browsers other than Safari do not show TIFF, so Label Studio showed such a task blank (a
    review: the model trained on it, the person saw "There was an issue loading URL")."""
    if head[:4] in TIFF_MAGIC:
        return ("TIFF: web browsers, and so Label Studio, cannot show it to people; convert "
                "it to PNG (e.g. `convert x.tif x.png`) and ingest again")
    return None


def _channels(keep: PixelKeeper | None) -> int:
    return 3 if keep is None else keep.channels


def _kept(img: Image.Image, keep: PixelKeeper | None) -> Decoded:
    return Decoded(*img.size, thumbnail(img), None if keep is None else keep.pixels(img))


def _changed(files: list[str], seen: dict[str, tuple[int, int, int]],
             listed: dict[str, Stamp] | None
             ) -> tuple[list[str], list[str], dict[str, Stamp]]:
    """(files to read, files unchanged since they were read, stamp of each file to read).
    ``listed``: the stamps of remote objects, from their listing (else each file is stat-ed).
    A file that cannot be stat-ed is read, so that reading it says why it fails."""
    to_read, unchanged, stamps = [], [], {}
    stat, get = os.stat, seen.get  # this loop runs for every file of every round
    for path in files:
        try:
            if listed is not None:
                stamp = listed[path]
            else:
                st = stat(path)
                stamp = Stamp(st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            to_read.append(path)
            continue
        if get(path) == stamp:
            unchanged.append(path)
        else:
            to_read.append(path)
            stamps[path] = stamp
    return to_read, unchanged, stamps


def thumbnail(img: Image.Image) -> bytes:
    """An image's fingerprint for near-duplicate groups: 16x16 grey, 256 bytes."""
    side = THUMB_SIDE
    return img.convert("L").resize((side, side), Image.Resampling.BILINEAR).tobytes()


def record_thumbnails(store: LabelStore, thumbs: dict[str, bytes]) -> None:
    """Store new items' thumbnails with their near-duplicate group (an earlier item's, or
    their own; ``labeling.near_duplicates``)."""
    if not thumbs:
        return
    keys, old, groups = store.thumbs()
    new_keys = [k for k in thumbs if k not in groups]
    new = np.frombuffer(b"".join(thumbs[k] for k in new_keys), dtype=np.uint8)
    assigned = assign_groups(new_keys, new.reshape(len(new_keys), -1), keys, old, groups)
    store.set_thumbs({k: thumbs[k] for k in new_keys}, assigned)


def _check_root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise IngestError(f"folder not found: {path}")
    if not path.is_dir():
        raise IngestError(f"not a folder: {path}; give the folder that holds the images")
    return path.resolve()


def _check_prefix(root: str) -> str:
    """``s3://bucket/prefix`` without trailing slashes; ``IngestError`` if it names no bucket."""
    try:
        split_s3(root)
    except ValueError as err:
        raise IngestError(str(err)) from None
    return root.rstrip("/")


def _list_prefix(root: str) -> tuple[_Found, dict[str, Stamp]]:
    """The objects under ``root``, as ``_walk`` finds files (in key order), and their stamps."""
    found = _Found([], [], [], [], [], [], [])
    stamps: dict[str, Stamp] = {}
    for obj in list_objects(root):
        if not _image_name(obj.path.rsplit("/", 1)[-1]):
            found.others.append(obj.path)
            continue
        found.images.append(obj.path)
        stamps[obj.path] = Stamp.of_object(obj.size_bytes, obj.last_modified, obj.etag)
    return found, stamps


class _Found(NamedTuple):
    """What the walk found under the image folder."""

    images: list[str]  # image files to read: resolved, each once, under the root
    refused: list[Rejected]  # image files not to read: links out of the root, non-UTF-8 names
    others: list[str]  # files without an image extension, and macOS's "._" files
    folder_links: list[str]
    unreadable: list[Rejected]  # folders that could not be listed
    hidden: list[str]  # folders whose name starts with a dot: not walked
    file_links: list[str]  # links to image files in the tree: read as the file they name


def walked_by_ingest(folder: Path, images: Path) -> bool:
    """Whether ``_walk`` of the image folder ``images`` reads the image files in ``folder``:
    it is inside and no folder on the way is hidden (the rule ``_walk`` applies)."""
    folder, images = Path(folder).absolute().resolve(), Path(images).resolve()
    return folder.is_relative_to(images) and not any(
        _hidden(part) for part in folder.relative_to(images).parts)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _image_name(name: str) -> bool:
    """Whether a file of this name is read as an image: its extension is an image's and it
    is not macOS's "._photo.jpg", which it writes beside each file it copies to a disk
    without its own metadata (AppleDouble: not an image; they read as broken ones)."""
    dot = name.rfind(".")
    return dot >= 1 and name[dot:].lower() in IMAGE_EXTENSIONS and not name.startswith("._")


def _walk(root: Path) -> _Found:
    """Every file under ``root``, in ``os.walk``'s order (a folder's files, sorted, then its
    folders, sorted): a stable order makes "first file with these bytes" reproducible.

    On ``os.scandir`` entries, so that a plain file costs no system call here: its path is
    already resolved (the root is, and no link is followed), and only links are resolved. This
    is what a round pays for every file when nothing changed."""
    found = _Found([], [], [], [], [], [], [])
    seen: set[str] = set()
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            # A folder that cannot be listed is reported, never skipped silently.
            found.unreadable.append(Rejected(_shown(folder), err.strerror or str(err)))
            continue
        folders = []
        for entry in entries:
            if _is_folder(entry):
                if _hidden(entry.name):
                    # .labelloop (the workspace: reports, plots), .git, .thumbnails, editors'
                    # caches: never a user's pool, and walking them would add their images.
                    found.hidden.append(_shown(entry.path))
                elif entry.is_symlink():
                    found.folder_links.append(_shown(entry.path))  # listed, not walked
                else:
                    folders.append(entry.path)
                continue
            if not _image_name(entry.name):
                found.others.append(_shown(entry.path))
                continue
            resolved = entry.path
            if entry.is_symlink():
                # A link to a file elsewhere in the tree is the same file, not a duplicate. A
                # broken or looping link keeps its own name: its target cannot be opened, and
                # reading it says which of the two it is.
                if os.path.exists(entry.path):
                    resolved = os.path.realpath(entry.path)
                    if not Path(resolved).is_relative_to(root):
                        # Never read: the user chose this folder, not the files links reach.
                        found.refused.append(Rejected(
                            _shown(entry.path),
                            f"link points outside the folder read ({_shown(root)}): "
                            f"{_shown(resolved)}"))
                        continue
                    found.file_links.append(_shown(entry.path))  # counted: in no other row
            if not resolved.isascii() and _shown(resolved) != resolved:
                found.refused.append(Rejected(_shown(resolved), "file name is not valid UTF-8"))
                continue
            if resolved not in seen:
                seen.add(resolved)
                found.images.append(resolved)
        stack.extend(reversed(folders))
    return found


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link: a link to a folder counts as one
    except OSError:
        return False


def _shown(path: str) -> str:
    """``path`` as valid UTF-8 text, for the store and the console: bytes of a name that are not
    UTF-8 (kept by Python as surrogate escapes) become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _hash_files(
    store: LabelStore, files: list[str], progress: bool
) -> tuple[list[tuple[str, str, int]], list[Rejected]]:
    """(path, key, size) of each readable file; the unreadable ones are quarantined."""
    hashed: list[tuple[str, str, int]] = []
    quarantined: list[Rejected] = []
    for path in track(files, description="hashing", disable=not progress, transient=True):
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                # Opening a named pipe waits for a writer forever; devices are no images either.
                quarantined.append(_quarantine(
                    store, path, "not a regular file (a named pipe, device or socket)"))
                continue
            key, size = file_key(path)
        except OSError as err:
            quarantined.append(_quarantine(store, path, _unreadable_reason(path, err)))
            continue
        hashed.append((path, key, size))
    return hashed, quarantined


def _read_objects(
    store: LabelStore, paths: list[str], progress: bool, max_pixels: int,
    decoded: dict[str, Decoded | str], keep: PixelKeeper | None,
) -> tuple[list[tuple[str, str, int]], list[Rejected]]:
    """``_hash_files`` for S3 objects: each is fetched once, and its bytes are decoded here
    (the outcome goes to ``decoded``), so that the decoding loop does not fetch it again."""
    hashed: list[tuple[str, str, int]] = []
    quarantined: list[Rejected] = []
    for path in track(paths, description="reading", disable=not progress, transient=True):
        try:
            data = read_bytes(path)
        except OSError as err:
            quarantined.append(_quarantine(store, path, f"unreadable: {err}"))
            continue
        hashed.append((path, bytes_key(data), len(data)))
        if (why := not_for_browsers(data[:4])) is not None:
            decoded[path] = why
            continue
        try:
            with decode_image(data, max_pixels=max_pixels, channels=_channels(keep)) as img:
                decoded[path] = _kept(img, keep)
        except ImageError as err:
            decoded[path] = str(err)
    return hashed, quarantined


def _unreadable_reason(path: str, err: OSError) -> str:
    if os.path.islink(path):
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if err.errno == errno.ENOENT:
            return "broken symbolic link"
    return f"unreadable: {err.strerror or err}"


def _quarantine(store: LabelStore, path: str, reason: str, key: str | None = None) -> Rejected:
    store.quarantine(path, reason, key=key)
    return Rejected(path, reason)


def _write(store: LabelStore, pending: list[NewItem], keep: PixelKeeper | None,
           pixels: dict[str, np.ndarray], cache_failed: list[str]) -> list[NewItem]:
    new_keys = set(store.add_items(pending))
    written = [item for item in pending if item.key in new_keys]
    if keep is not None and written and not cache_failed:
        # After the items: a crash between the two leaves items without pixels, which the
        # predict step decodes; never pixels of an item the store does not have.
        keys = [item.key for item in written]
        try:
            keep.cache.add(keys, np.stack([pixels[k] for k in keys]))
        except OSError as err:
            # Kept pixels only spare the predict step a decode, and the items are stored: a
            # full disk or a read-only cache is said once, and ingest goes on without them.
            cache_failed.append(f"{err.strerror or err} ({keep.cache.folder}); the predict "
                                "step decodes the image files instead")
    for item in pending:
        pixels.pop(item.key, None)
    pending.clear()
    return written
