"""A round on a large photo pool in probe mode, with a real Label Studio: seconds per step.

Builds a pool of ``--n`` photos (default 20,000) from the real tuxpaint photos of
``labelloop datasets export photos``: each a different random crop (55-100% of a side), turn
(up to 25 degrees), mirror, colour and brightness of one of the pool's photos, 112-200 px, JPEG;
its label is its source photo's. The project is the photos quickstart's (MobileNetV2 with
ImageNet weights, ``mode = "probe"``) with ``--batch`` items to people a round and
``--initial`` random ones first. A perfect simulated person answers every task between rounds.

Round 1 picks and pushes the first random batch. Round 2 trains the first head and fills the
embedding cache: every image of the pool is decoded and embedded once (the slow part, done once
per backbone). Rounds from 3 on are what the goal is about: the pool's embeddings cached, a new
head trained, promoted, the pool predicted, accepted, selected and pushed. Human time is left
out (people answer between rounds); Label Studio's own time is in (sync, push). Goal: the whole
round under 60 s on this machine.

    .venv/bin/python scripts/bench_probe_round.py --folder /tmp/probe20k [--n 20000] [--rounds 4]

The folder is kept: a second run continues its rounds with the cache already filled.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from labeling.studio import server
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.quickstart import prepare
from pipeline.round import session as studio_session
from pipeline.round.steps import run_round


def derived_photos(truth: dict[str, str], folder: Path, n: int, seed: int = 0) -> dict[str, str]:
    """Write ``n`` altered copies of the photos in ``truth`` (path -> label) into ``folder``;
    returns their path -> label. Files already there are kept (a rerun writes nothing)."""
    rng = random.Random(seed)
    sources = sorted(truth)
    out = {}
    for i in range(n):
        source = sources[i % len(sources)]
        path = folder / f"derived-{i:06d}.jpg"
        draws = [rng.random() for _ in range(7)]  # drawn whether or not the file exists
        if not path.exists():
            _alter(source, draws).save(path, quality=90)
        out[str(path.resolve())] = truth[source]
        if (i + 1) % 5000 == 0:
            print(f"  {i + 1:,} of {n:,} photos written", flush=True)
    return out


def _alter(source: str, draws: list[float]) -> Image.Image:
    with Image.open(source) as img:
        img = img.convert("RGB")
    w, h = img.size
    side = 0.55 + 0.45 * draws[0]
    cw, ch = max(8, int(w * side)), max(8, int(h * side))
    x, y = int((w - cw) * draws[1]), int((h - ch) * draws[2])
    img = img.crop((x, y, x + cw, y + ch)).rotate(50 * (draws[3] - 0.5), fillcolor=(255,) * 3)
    if draws[4] < 0.5:
        img = ImageOps.mirror(img)
    img = ImageEnhance.Color(img).enhance(0.6 + 0.8 * draws[5])
    img = ImageEnhance.Brightness(img).enhance(0.8 + 0.4 * draws[6])
    size = 112 + int(88 * draws[0])
    return img.resize((size, size))


def configure(config_path: Path, *, batch: int, initial: int, port: int) -> None:
    text = config_path.read_text()
    for section, key, value in (("loop", "batch_size", batch), ("loop", "initial_random", initial),
                                ("studio", "port", port)):
        text = _set(text, section, key, value)
    config_path.write_text(text)


def _set(text: str, section: str, key: str, value: int) -> str:
    """``key = value`` in ``[section]`` only: [training] and [compute] have a batch_size too."""
    start = text.index(f"[{section}]")
    end = text.find("\n[", start)
    end = len(text) if end < 0 else end
    block = re.sub(rf"(?m)^{key} = \d+$", f"{key} = {value}", text[start:end])
    return text[:start] + block + text[end:]


def timed_round(project) -> tuple[dict[str, float], dict]:
    """Run one round; seconds per step (ingest first) and the round's record."""
    times: dict[str, float] = {}
    last = time.perf_counter()

    def on_step(step: str, _record: dict) -> None:
        nonlocal last
        now = time.perf_counter()
        times[step] = now - last
        last = now

    record = run_round(project, on_step=on_step)
    return times, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--n", type=int, default=20_000, help="photos in the pool")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--initial", type=int, default=200)
    parser.add_argument("--port", type=int, default=8094)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    config_path, truth, _ = prepare(args.folder, "photos")
    configure(config_path, batch=args.batch, initial=args.initial, port=args.port)
    started = time.perf_counter()
    truth.update(derived_photos(truth, args.folder / "images", args.n - len(truth)))
    print(f"pool: {len(truth):,} photos ({time.perf_counter() - started:.0f} s to write)")
    project = open_project(find_config(config_path), env=dict(os.environ))
    try:
        started = time.perf_counter()
        ingest_folder(project.store, project.config.images_dir, progress=True)
        print(f"first ingest: {time.perf_counter() - started:.1f} s")
        studio_session.ensure_embedded_server(project)
        for _ in range(len(project.store.rounds()), args.rounds):
            times, record = timed_round(project)
            stats = record["stats"]
            steps = "  ".join(f"{step} {sec:.1f}" for step, sec in times.items())
            print(f"round {record['id']}: {sum(times.values()):.1f} s  |  {steps}", flush=True)
            print(f"  trained on {stats['train'].get('n_train', '-')}, predicted "
                  f"{stats['predict'].get('predicted', '-')}, accepted "
                  f"{stats['accept'].get('accepted', '-')}, picked "
                  f"{stats['select'].get('picked', '-')}, pushed "
                  f"{stats['push'].get('pushed', '-')}", flush=True)
            answered = studio_session.simulate_annotators(project, truth, noise=0.0, seed=0)
            print(f"  (a perfect simulated person answered {answered} tasks)", flush=True)
    finally:
        server.stop(project.config.studio_dir)
        project.close()


if __name__ == "__main__":
    main()
