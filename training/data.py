"""Images -> model input: resizing, normalisation, training augmentation, and datasets.

Pixels travel as uint8 ``[C, S, S]`` tensors (a quarter of the bytes of float) until the batch
reaches the model's device, where ``normalize`` (and, when training, ``augment``) run on the whole
batch at once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from training._progress import progress_bar
from training.images import ImageError, open_image


@dataclass(frozen=True)
class TransformConfig:
    """How images become model input: channels (1 or 3), square size, per-channel mean/std."""

    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean and std need {self.channels} values each")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (lists, not tuples) for checkpoints and JSON."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformConfig:
        """Inverse of ``to_dict``."""
        return cls(d["channels"], d["image_size"], tuple(d["mean"]), tuple(d["std"]))


def to_model_pixels(image: Image.Image | np.ndarray, tconf: TransformConfig) -> np.ndarray:
    """One image (PIL, or uint8 ``[H, W]`` / ``[H, W, C]``) -> uint8 ``[S, S, C]`` at the model's
    size and channel count.

    Images are stretched to the square, not cropped: a crop could cut away the labelled object.
    """
    if isinstance(image, Image.Image):
        img = image
    else:
        img = Image.fromarray(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    mode = "L" if tconf.channels == 1 else "RGB"
    if img.mode != mode:
        img = img.convert(mode)
    size = (tconf.image_size, tconf.image_size)
    if img.size != size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    arr = np.array(img)  # a writable copy: torch refuses to wrap read-only memory
    return arr[:, :, None] if arr.ndim == 2 else arr


def normalize(batch: torch.Tensor, tconf: TransformConfig) -> torch.Tensor:
    """uint8 ``[B, C, S, S]`` -> float32, scaled to 0..1 then standardised by mean/std.

    Keeps the batch's memory format (channels-last stays channels-last).
    """
    std = torch.tensor(tconf.std, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
    mean = torch.tensor(tconf.mean, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
    # x * scale + shift in place on the one new float tensor: for 224 px RGB batches, separate
    # subtract and divide allocating fresh tensors cost a third as much as the model's forward.
    return batch.float().mul_(1.0 / (255.0 * std)).add_(-mean / std)


def augment(batch: torch.Tensor, strength: float, *, generator: torch.Generator) -> torch.Tensor:
    """Random small affine per image (rotation, translation, scale) on float ``[B, C, S, S]``.

    ``strength`` 0..1 scales the range: at 1, up to 20 degrees, 12% shift and 15% zoom. Edges
    are extended (border padding) so no black or grey frame appears whatever the background.
    Draws only from ``generator``.
    """
    if strength <= 0:
        return batch
    n = batch.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * limit * strength

    angle = uniform(math.radians(20))
    scale = 1 + uniform(0.15)
    shift_x, shift_y = uniform(0.24), uniform(0.24)  # grid units: [-1, 1] spans the image
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    ).to(batch.device)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, padding_mode="border", align_corners=False)


class ImageFileDataset(Dataset):
    """Image files as uint8 ``[C, S, S]`` tensors (channels-last in memory, as the models run).

    Item ``i`` is ``(pixels, error)``: a file that cannot be read gives zeros and the reason, so
    the reading loop (``iter_file_batches``) can name the file in the main process rather than
    surface a worker's traceback.
    """

    def __init__(self, paths: Sequence[str | Path], tconf: TransformConfig) -> None:
        self.paths = list(paths)
        self.tconf = tconf

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        pixels, errors = self.__getitems__([i])
        return pixels[0], errors[0]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, list[str]]:
        """A whole batch ``(pixels [B, C, S, S], errors [B])`` filled in place. The DataLoader
        calls this instead of ``__getitem__`` per image, saving a tensor per image and the
        collation: a noticeable share of the reading time for small images."""
        size = self.tconf.image_size
        batch = np.zeros((len(indices), size, size, self.tconf.channels), dtype=np.uint8)
        errors = [""] * len(indices)
        for row, i in enumerate(indices):
            try:
                img = open_image(self.paths[i], channels=self.tconf.channels)
            except ImageError as err:
                errors[row] = str(err)
                continue
            batch[row] = to_model_pixels(img, self.tconf)
        return torch.from_numpy(batch).permute(0, 3, 1, 2), errors


class ArrayDataset(Dataset):
    """Preloaded uint8 images ``[N, H, W]`` or ``[N, H, W, C]``, resized once at construction.

    ``images`` holds the result as uint8 ``[N, C, S, S]`` (channels-last in memory; it shares
    memory with the input when nothing needed converting); item ``i`` is ``(images[i], "")``,
    the same shape of item as ``ImageFileDataset``.
    """

    def __init__(self, images: np.ndarray, tconf: TransformConfig) -> None:
        images = check_uint8_images(images)
        self.tconf = tconf
        size = tconf.image_size
        channels = images.shape[3] if images.ndim == 4 else 1
        if images.shape[1:3] == (size, size) and channels == tconf.channels:
            ready = images.reshape(len(images), size, size, channels)  # nothing to convert
        else:
            ready = np.empty((len(images), size, size, tconf.channels), dtype=np.uint8)
            for i, img in enumerate(images):
                ready[i] = to_model_pixels(img, tconf)
        ready = np.ascontiguousarray(ready)
        if not ready.flags.writeable:  # torch will not wrap read-only memory
            ready = ready.copy()
        # [N, S, S, C] memory viewed as [N, C, S, S]: channels-last, as the models run, no copy.
        self.images = torch.from_numpy(ready).permute(0, 3, 1, 2)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        return self.images[i], ""


def check_uint8_images(images: np.ndarray) -> np.ndarray:
    """Raise ``ValueError`` unless ``images`` is uint8 ``[N, H, W]`` or ``[N, H, W, 1|3]``."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        dtype = getattr(images, "dtype", type(images).__name__)
        raise ValueError(
            f"images must be a uint8 numpy array, got {dtype}; scale 0..255 values with "
            f"np.clip(x, 0, 255).round().astype(np.uint8)"
        )
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise ValueError(
            f"images must be [N, H, W] or [N, H, W, C] with C 1 or 3, got shape {images.shape}"
        )
    return images


def iter_file_batches(
    paths: Sequence[str | Path],
    tconf: TransformConfig,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    pin_memory: bool = False,
    progress: bool = False,
    description: str = "reading images",
) -> Iterator[torch.Tensor]:
    """Yield uint8 ``[B, C, S, S]`` batches of the files in order, decoded by ``num_workers``
    processes. Raises ``ImageError`` naming the first file that cannot be read.
    """
    dataset = ImageFileDataset(paths, tconf)
    n = len(dataset)
    # With workers, this process reads the first batch itself while they start (a process start
    # takes as long as decoding a few hundred small images), then the workers take over.
    head = min(batch_size, n) if num_workers > 0 else 0
    rest_batches = math.ceil((n - head) / batch_size)
    loader = DataLoader(
        Subset(dataset, range(head, n)),
        batch_size=batch_size,
        shuffle=False,
        # More workers than batches would sit idle and still cost a process start each.
        num_workers=min(num_workers, rest_batches),
        pin_memory=pin_memory,
        collate_fn=_as_batch,
    )
    with progress_bar(progress, description, n) as bar:
        batches = iter(loader)  # starts the workers
        if head:
            batches = itertools.chain([dataset.__getitems__(range(head))], batches)
        start = 0
        for pixels, errors in batches:
            for offset, error in enumerate(errors):
                if error:
                    raise ImageError(f"cannot read image {dataset.paths[start + offset]}: {error}")
            start += len(pixels)
            bar.advance(len(pixels))
            yield pixels


def _as_batch(batch: tuple[torch.Tensor, list[str]]) -> tuple[torch.Tensor, list[str]]:
    # ImageFileDataset.__getitems__ already returns a collated batch.
    return batch


def load_arrays(
    paths: Sequence[str | Path],
    tconf: TransformConfig,
    *,
    num_workers: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Decode the files once into uint8 ``[N, S, S]`` (1 channel) or ``[N, S, S, 3]``, ready for
    ``ArrayDataset`` / ``train_arrays`` / ``predict_arrays`` without further resizing.
    """
    size, channels = tconf.image_size, tconf.channels
    out = np.empty((len(paths), channels, size, size), dtype=np.uint8)
    start = 0
    for batch in iter_file_batches(
        paths, tconf, num_workers=num_workers, progress=progress, description="decoding images"
    ):
        out[start : start + len(batch)] = batch.numpy()
        start += len(batch)
    out = out.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(out[..., 0] if channels == 1 else out)
