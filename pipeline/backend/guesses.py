"""The champion's answer for images it is asked about one batch at a time (``labelloop serve``,
Label Studio's "Connect model"), per task type: the value a person is shown and a score.

Each is what a round's push would show for the same image, so a task imported by hand gets the
pre-annotation a pushed one would: one class with its probability, or the boxes the machine
label keeps (``labeling.box_scores.KEEP``) with a score each and the image's confidence (its
least sure keep-or-drop decision). Raises ``ImageError`` naming a file that cannot be read.

A detector's scores for one image can differ in the third decimal between the two paths:
torchvision pads a batch to its largest image, and the round and the backend batch different
images together. A box scored within that of 0.5 can be kept by one and not the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from labeling.box_scores import image_confidence, machine_value
from pipeline.detection_model import predict_values
from pipeline.project.project import Project
from pipeline.round.predict import predict_files


def class_guesses(project: Project, model, paths: Sequence[str],
                  keys: Sequence[str]) -> list[tuple[str, float]]:
    """(class, its probability) per image, through the rounds' prediction path (a probe
    model reads cached embeddings by item key)."""
    preds = predict_files(project, model, list(paths), list(keys), embeddings=False,
                          progress=False)
    return [(project.classes[int(p.argmax())], float(p.max())) for p in preds.probs]


def box_guesses(project: Project, model, paths: Sequence[str],
                keys: Sequence[str]) -> list[tuple[dict, float]]:
    """(the kept boxes with their scores, the image's confidence) per image."""
    out = []
    for value in predict_values(model, list(paths)):
        out.append((machine_value(value), image_confidence([b["score"] for b in value["boxes"]])))
    return out


# By ``[project] task``: what ``labelloop serve`` answers for each image.
GUESSES: dict[str, Callable[..., list[tuple]]] = {"classification": class_guesses,
                                                  "detection": box_guesses}
