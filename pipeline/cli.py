"""The ``labelloop`` command line. Each command lives in its own module and is registered here."""

from __future__ import annotations

import typer

from pipeline.datasets import datasets_app
from pipeline.export_cli import export_command
from pipeline.ingest import ingest_command
from pipeline.loop_cli import register as register_loop_commands
from pipeline.quickstart_cli import quickstart_command
from pipeline.report_cli import report_command
from pipeline.simulate_cli import simulate_command
from pipeline.studio_cli import register as register_studio_commands
from pipeline.tuning_cli import tune_command

app = typer.Typer(
    name="labelloop",
    help="Active-learning auto-labeling for images: pre-annotate, auto-accept, ask humans, "
    "retrain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(datasets_app, name="datasets")
app.command("ingest")(ingest_command)
app.command("simulate")(simulate_command)
app.command("export")(export_command)
app.command("report")(report_command)
app.command("tune")(tune_command)
register_loop_commands(app)
app.command("quickstart")(quickstart_command)
register_studio_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
