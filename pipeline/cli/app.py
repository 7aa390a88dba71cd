"""The ``labelloop`` command line: one module per command group, registered here in the order
a user meets them (set up, label, look, then the tools around the loop)."""

from __future__ import annotations

import typer

from pipeline.cli import rounds, studio
from pipeline.cli.datasets import datasets_app
from pipeline.cli.export import export_command
from pipeline.cli.ingest import ingest_command
from pipeline.cli.quickstart import quickstart_command
from pipeline.cli.report import report_command
from pipeline.cli.simulate import simulate_command
from pipeline.cli.tune import tune_command

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
rounds.register(app)
app.command("quickstart")(quickstart_command)
studio.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
