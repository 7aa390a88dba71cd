"""Label Studio URLs that are refused unshown: no import of the SDK here, so the config can
check its ``[studio] url`` without paying for it."""

from __future__ import annotations

import urllib.parse


def url_secret_problem(url: str) -> str | None:
    """Why a Label Studio URL is refused without being shown (a user part, password, query or
    fragment may hold a secret, and messages naming the server reach terminals and logs;
    labelloop signs in with an API key), or None."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.username is None and parts.password is None and not (parts.query
                                                                       or parts.fragment):
            return None
        shown = f"{parts.scheme}://{parts.hostname or ''}..."
    except ValueError:  # brackets that do not close, say: not shown either
        return ("the Label Studio URL is not a valid URL (not shown: it may hold a secret); "
                "give the server's address alone (http://host:port)")
    return (f"the Label Studio URL ({shown}) holds a user, password, query or fragment; give "
            "the server's address alone (http://host:port) and the API key in [studio] "
            "api_key_file or LABEL_STUDIO_API_KEY")
