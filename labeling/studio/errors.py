"""Exceptions of the Label Studio integration.

Every message says what is wrong and what fixes it, on one line, and never holds the API key:
SDK and httpx errors are translated (``from None``) so neither their text nor their attached
request (whose headers carry the key) travels with the exception.
"""

from __future__ import annotations


class StudioError(RuntimeError):
    """A Label Studio operation failed; ``str(err)`` is the one-line reason for the user."""


class StudioUnreachable(StudioError):
    """The server did not answer (refused, timed out, went away mid-operation)."""


class EmbeddedServerStopped(StudioError):
    """The project's embedded Label Studio is not running (``labelloop studio start``)."""


class StudioAuthError(StudioError):
    """The API key is missing, malformed, expired or refused."""


class NotLabelStudio(StudioError):
    """Something answered at the URL, but it is not a Label Studio server."""


class ProjectMismatch(StudioError):
    """An existing project's labeling config disagrees with the class list."""


class InvalidPrediction(StudioError):
    """A prediction names a class the project does not have; nothing was sent."""


class ServerError(StudioError):
    """The embedded server could not be started, stopped or found."""


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every non-empty secret replaced, for messages built from foreign text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
