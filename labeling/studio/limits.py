"""What Label Studio itself accepts, as plain numbers (no import of the SDK or httpx: configs
are checked against these when they load)."""

TITLE_MIN, TITLE_MAX = 3, 50  # characters in a project title
