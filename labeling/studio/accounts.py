"""Named annotator accounts on the embedded Label Studio, each with its own login and key.

Label Studio Community has no API that makes a user who can log in (``POST /api/users/`` makes
one without a password or organization). What works, checked on 1.23.2, is what a person does:
the admin's invite link (``GET /api/invite``), the signup form it opens (with its CSRF cookie),
then ``GET /api/current-user/token`` on the new session. That is done here over HTTP, so it also
works on a server labelloop did not start, as long as its admin key is given.

Each account's email, password and key are kept as the admin's are: in files created 0600 under
``<studio data dir>/annotators/``, never printed or logged. An existing Label Studio's own users
need nothing of this: sync reads who made each annotation from the server.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from labeling.studio.errors import StudioError
from labeling.studio.server import write_private

if TYPE_CHECKING:  # the SDK takes a second to import; only its type is needed here
    from labeling.studio.connection import Studio

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
EMAIL_DOMAIN = "annotators.labelloop.local"
FOLDER = "annotators"


@dataclass(frozen=True)
class Annotator:
    """One annotator account; the key and password stay in their files (``key_file``)."""

    name: str
    email: str
    user_id: int
    key_file: Path
    password_file: Path


def add_annotator(studio: Studio, data_dir: Path, name: str) -> Annotator:
    """Create the account ``name`` on ``studio`` (connected with the admin's key) and keep its
    login in ``data_dir/annotators``. Refuses a name that is taken, here or on the server."""
    if not NAME_PATTERN.fullmatch(name):
        raise StudioError(f"annotator name {name!r} must be 1-40 lowercase letters, digits, "
                          f"'-' or '_', starting with a letter or digit")
    folder = Path(data_dir) / FOLDER
    if (folder / f"{name}.json").exists():
        raise StudioError(f"annotator {name!r} exists already ({folder / (name + '.json')}); "
                          f"choose another name")
    email = f"{name}@{EMAIL_DOMAIN}"
    users = studio.get_json("api/users", {"page_size": 1000}, action="listing users")
    rows = users.get("results", []) if isinstance(users, dict) else users
    # The password is written before the signup: an add killed after Label Studio made the
    # account (its record not written yet) is finished by the next add of the name, which
    # logs in with it, instead of leaving an account nobody can use and a name refused.
    pending = folder / f"{name}.password"
    password = _read_pending(pending)
    if any(u.get("email") == email for u in rows):
        if password is None:
            raise StudioError(f"Label Studio at {studio.url} has a user {email} already; "
                              f"choose another annotator name")
        try:
            key, user_id = _session_key(studio.url, "/user/login/", email, password,
                                        timeout=studio.timeout, action="logging in")
        except _Refused as err:
            # The account is not the one the unfinished add made (someone made it by hand,
            # or changed its password): the kept password cannot finish it. (A server that
            # cannot be reached says so, without this: the file is the account's password.)
            raise StudioError(f"{err}. {pending} holds the password of an add of {name!r} "
                              f"that did not finish, and it does not open {email}; if that "
                              f"account is not labelloop's, delete {pending} and choose another "
                              f"annotator name") from None
    else:
        if password is None:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            password = claim_password(pending)
        invite = studio.get_json("api/invite", action="reading the invite link")
        key, user_id = _sign_up(studio.url, str(invite["invite_url"]), email, password,
                                timeout=studio.timeout)
    write_private(folder / f"{name}.key", key)
    # Written last: its presence says the account is complete.
    write_private(folder / f"{name}.json", json.dumps({"name": name, "email": email,
                                                        "user_id": user_id}))
    return _annotator(folder, name)


def list_annotators(data_dir: Path, *, skip_unreadable: bool = False) -> list[Annotator]:
    """The accounts made by ``add_annotator`` for this server, by name. A record that cannot
    be read raises StudioError, or with ``skip_unreadable`` is left out."""
    folder = Path(data_dir) / FOLDER
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(_annotator(folder, path.stem))
        except StudioError:
            if not skip_unreadable:
                raise
    return found


def count_annotators(data_dir: Path) -> int:
    """How many accounts ``add_annotator`` made for this server (their records, not read)."""
    folder = Path(data_dir) / FOLDER
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def annotator_key(annotator: Annotator) -> str:
    """The account's API key, read from its file."""
    try:
        key = annotator.key_file.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise StudioError(f"the key file of annotator {annotator.name!r} ({annotator.key_file}) "
                          f"cannot be read ({err.strerror}); restore it, or add the annotator "
                          f"again under another name") from None
    if not key:
        raise StudioError(f"the key file of annotator {annotator.name!r} "
                          f"({annotator.key_file}) is empty")
    return key


def _annotator(folder: Path, name: str) -> Annotator:
    path = folder / f"{name}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        email, user_id = str(record["email"]), int(record["user_id"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StudioError(f"annotator record {path} cannot be read ({err!r}); restore it or "
                          f"delete the annotator's files in {folder}") from None
    return Annotator(name, email, user_id, folder / f"{name}.key", folder / f"{name}.password")


class _Refused(StudioError):
    """Label Studio answered the signup or login form with a refusal."""


def claim_password(path: Path) -> str:
    """A new password, written to ``path`` unless another add of the name wrote one first
    (two adds at once): then that one, so that both sign up with the password the file keeps
    (one of them gets the account) instead of the file keeping the loser's."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    write_private(tmp, secrets.token_urlsafe(18))
    try:
        os.link(tmp, path)  # fails if the file exists: the first writer's password stays
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: create it exclusively instead
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(tmp.read_text(encoding="utf-8"))
    finally:
        tmp.unlink(missing_ok=True)
    password = _read_pending(path)
    if password is None:
        raise StudioError(f"{path} was emptied while the annotator was added; try again")
    return password


def _read_pending(path: Path) -> str | None:
    """The password an interrupted ``add_annotator`` wrote for the name, if any."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or "not UTF-8 text"
        raise StudioError(f"{path} cannot be read ({why}); delete it to add the annotator "
                          f"afresh") from None


def _sign_up(url: str, invite_url: str, email: str, password: str, *,
             timeout: float) -> tuple[str, int]:
    """Fill in the signup form behind the invite link; return the new user's key and id."""
    path = httpx.URL(invite_url).raw_path.decode() if "://" in invite_url else invite_url
    return _session_key(url, path, email, password, timeout=timeout, action="signing up",
                        extra={"how_find_us": "", "allow_newsletters": "false"},
                        referer=f"{url}/user/signup/")


def _session_key(url: str, path: str, email: str, password: str, *, timeout: float,
                 action: str, extra: dict | None = None, referer: str | None = None
                 ) -> tuple[str, int]:
    """Post Label Studio's signup or login form at ``path`` as ``email``; return the account's
    key and id, read on the session the form opened."""
    try:
        with httpx.Client(base_url=url, timeout=timeout, follow_redirects=False) as client:
            form = client.get(path)
            csrf = client.cookies.get("csrftoken")
            if form.status_code != 200 or not csrf:
                raise StudioError(f"{url}{path.split('?')[0]} did not open a form for "
                                  f"{action} (HTTP {form.status_code})")
            done = client.post(path, data={"csrfmiddlewaretoken": csrf, "email": email,
                                           "password": password, **(extra or {})},
                               headers={"Referer": referer or f"{url}{path}"})
            if done.status_code != 302:
                raise _Refused(f"Label Studio at {url} refused {action} as {email} "
                                  f"(HTTP {done.status_code})")
            token = client.get("/api/current-user/token")
            whoami = client.get("/api/current-user/whoami")
            if token.status_code != 200 or whoami.status_code != 200:
                raise StudioError(f"the account {email} could not read its key "
                                  f"(HTTP {token.status_code})")
            return str(token.json()["token"]), int(whoami.json()["id"])
    except httpx.HTTPError as err:
        raise StudioError(f"{action} as {email} at {url} failed: {type(err).__name__}") from None
