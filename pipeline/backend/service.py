"""What ``labelloop serve`` answers, independent of the web framework (``pipeline.backend.app``).

The protocol is Label Studio 1.23.2's ML backend protocol as it really calls it (see the
labelstudio notes): ``/health`` and ``/setup`` before every prediction batch (1 s and 3 s
timeouts: both read files only), ``/predict`` with a list of tasks answered with one result per
task in order, ``/webhook`` for the Train button and annotation events, ``/versions``. What a
task gets is its task type's (``pipeline.backend.guesses``): one class, or the champion's kept
boxes, as a round's push would show them.

"Already predicted" is decided by Label Studio from the version ``/setup`` answers, so ``/setup``
and every prediction carry the same name, the champion's registry version (``v<N>``): after a
promotion "Retrieve predictions" predicts again, and without one it does nothing.

A request for another Label Studio project than this labelloop project's, or with a labeling
config whose classes (or task type) are not the project's, is refused (``BadRequest``, HTTP
400) with what is wrong; nothing is predicted for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from labeling.tasks.base import TaskType
from pipeline.backend.guesses import GUESSES
from pipeline.backend.rounds import RoundRunner
from pipeline.backend.served import ServedChampion
from pipeline.project.answers_waiting import mark_answers_waiting
from pipeline.project.project import Project
from pipeline.round.blind import blind_keys
from pipeline.round.push import unsure
from pipeline.round.session import model_version_name
from pipeline.task_images import TaskImage, TaskImages
from training.images import ImageError

log = logging.getLogger("labelloop.serve")

ANSWER_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED",
                 "ANNOTATIONS_CREATED")
TRAIN_EVENT = "START_TRAINING"
# The version of an empty result for an image that could not be read (see ``predict``).
UNREAD_SUFFIX = "-unread"


class BadRequest(ValueError):
    """A request the backend does not serve; the message says why (sent back as HTTP 400)."""


class Backend:
    """One labelloop project served to one Label Studio project (id ``studio_project_id``)."""

    def __init__(self, project: Project, *, studio_project_id: int, images: TaskImages,
                 rounds: RoundRunner) -> None:
        self.project = project
        self.studio_project_id = studio_project_id
        self.champion = ServedChampion(project)
        self._images = images
        self._rounds = rounds
        self._labels: TaskType = project.task.labels
        self._predicting = threading.Lock()  # one batch at a time: bounded memory

    def health(self) -> dict:
        return {"status": "UP", "model_class": "labelloop",
                "model_version": self.champion.model_version()}

    def setup(self, body: object) -> dict:
        body = _mapping(body, "/setup")
        self._check_project(body.get("project"))
        self._check_config(body.get("schema"))
        return {"model_version": self.champion.model_version()}

    def versions(self) -> dict:
        return {"versions": [model_version_name(v.version)
                             for v in self.project.registry.versions()]}

    def predict(self, body: object) -> dict:
        """One result per task, in order; a task whose image cannot be read gets an empty
        result (its reason is logged) under a version that is not the champion's, so that
        Label Studio asks again; one a round's push sends without a
        pre-annotation (a blind reference or check, a guess under
        ``preannotate_min_confidence``): people's answers there must not lean on the model's,
        or the error measured on them is not the people's. Before any champion: no results,
        so Label Studio stores nothing and asks again later."""
        body = _mapping(body, "/predict")
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise BadRequest("/predict needs a JSON list under 'tasks'")
        self._check_project(body.get("project"))
        self._check_config(body.get("label_config"))
        if self.champion.current() is None:
            log.info("no champion yet: %d task(s) not predicted", len(tasks))
            return {"results": []}
        # Outside the lock: a batch waiting on a slow image host must not hold up the others.
        images = self._images.resolve_all(tasks)
        with self._predicting:
            loaded = self.champion.current()
            if loaded is None:
                return {"results": []}
            guesses = self._guesses(loaded.model, images)
            known = {i.key: g for i, g in zip(images, guesses, strict=True) if g is not None}
            hidden = blind_keys(self.project, known) | unsure(self.project, known, known)
        results = []
        for task, image, guess in zip(tasks, images, guesses, strict=True):
            if guess is None:
                log.warning("task %s: no prediction: %s", _task_id(task), image.reason)
                # Not the champion's version: Label Studio counts a task as predicted by the
                # version /setup names, and would never ask again once the image is readable
                # (a host back up, a file fixed).
                results.append({"result": [], "score": 0.0,
                                "model_version": loaded.model_version + UNREAD_SUFFIX})
                continue
            if image.key in hidden:
                results.append({"result": [], "score": 0.0,
                                "model_version": loaded.model_version})
                continue
            value, score = guess
            results.append({"result": self._labels.prediction_result(value),
                            "score": score, "model_version": loaded.model_version})
        return {"results": results}

    def webhook(self, body: object) -> dict:
        """``START_TRAINING`` queues a round and answers at once; annotation events mark the
        project's answers as waiting (a sync picks them up); other events are ignored."""
        body = _mapping(body, "/webhook")
        action = body.get("action")
        if not isinstance(action, str):
            raise BadRequest("/webhook needs an 'action'")
        project = body.get("project")
        self._check_project(project.get("id") if isinstance(project, dict) else project)
        if action == TRAIN_EVENT:
            state = self._rounds.request()
            log.info("Train pressed: round %s", state)
            return {"status": state}
        if action in ANSWER_EVENTS:
            mark_answers_waiting(self.project.config.workspace_dir)
            return {"status": "noted"}
        return {"status": "ignored", "action": action}

    # ---- internals -------------------------------------------------------------------
    def _check_project(self, value: object) -> None:
        # Label Studio names a project "<id>.<created timestamp>" in /setup and /predict.
        text = str(value) if isinstance(value, int | str) else ""
        head = text.split(".", 1)[0]
        if not head.isdigit():
            raise BadRequest(f"the request names no Label Studio project (got {value!r})")
        if int(head) != self.studio_project_id:
            raise BadRequest(f"this backend serves Label Studio project "
                             f"{self.studio_project_id} ({self.project.config.project.name}), "
                             f"not project {head}; run one `labelloop serve` per project")

    def _check_config(self, xml: object) -> None:
        if xml is None or xml == "":  # Label Studio omits it on some calls
            return
        classes = self._labels.config_classes(xml) if isinstance(xml, str) else None
        if classes is None:  # e.g. a one-class config sent to a box project's backend
            raise BadRequest(f"the project's labeling config is not labelloop's "
                             f"{self._labels.name} config over the classes "
                             f"{', '.join(self.project.classes)}")
        if set(classes) != set(self.project.classes):
            raise BadRequest(f"the project's labeling config does not match labelloop's "
                             f"classes {', '.join(self.project.classes)}: found "
                             f"{', '.join(classes)}")

    def _guesses(self, model, images: list[TaskImage]) -> list[tuple | None]:
        """(value, score) per image (None where there is no readable file), in one batch; if
        a file changed since it was checked, one at a time."""
        ready = [i for i, image in enumerate(images) if image.path is not None]
        out: list[tuple | None] = [None] * len(images)
        if not ready:
            return out
        try:
            rows = self._predict(model, [images[i] for i in ready])
            for i, row in zip(ready, rows, strict=True):
                out[i] = row
        except ImageError:
            for i in ready:
                try:
                    out[i] = self._predict(model, [images[i]])[0]
                except ImageError as err:
                    images[i] = TaskImage(reason=str(err))
        return out

    def _predict(self, model, images: list[TaskImage]) -> list[tuple]:
        guess = GUESSES[self.project.config.project.task]
        return guess(self.project, model, [i.path for i in images], [i.key for i in images])


def _mapping(body: object, where: str) -> Mapping:
    if not isinstance(body, dict):
        raise BadRequest(f"{where} needs a JSON object")
    return body


def _task_id(task: object) -> object:
    return task.get("id") if isinstance(task, dict) else None
