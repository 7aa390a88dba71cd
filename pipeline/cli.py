"""The ``labelloop`` command line. Each command lives in its own module and is registered here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="labelloop",
    help="Active-learning auto-labeling for images: pre-annotate, auto-accept, ask humans, retrain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
