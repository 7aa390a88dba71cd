"""The ``labelloop`` command line: one module per command group, registered here in the order
a user meets them (set up, label, look, models, then the tools to try it out), in panels."""

from __future__ import annotations

import typer

from pipeline.cli import rounds, studio
from pipeline.cli.datasets import datasets_app
from pipeline.cli.export import export_command
from pipeline.cli.ingest import ingest_command
from pipeline.cli.quickstart import quickstart_command
from pipeline.cli.report import report_command
from pipeline.cli.serve import serve_command
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

SET_UP, LABEL, LOOK, MODELS, TRY = ("Set up", "Label", "Look at the results", "Models",
                                    "Try it out")
app.command("init", rich_help_panel=SET_UP)(rounds.init_command)
app.command("ingest", rich_help_panel=SET_UP)(ingest_command)
app.add_typer(studio.studio_app, name="studio", rich_help_panel=SET_UP)
app.command("round", rich_help_panel=LABEL)(rounds.round_command)
app.command("run", rich_help_panel=LABEL)(rounds.run_command)
app.command("serve", rich_help_panel=LABEL)(serve_command)
app.command("status", rich_help_panel=LOOK)(rounds.status_command)
app.command("export", rich_help_panel=LOOK)(export_command)
app.command("report", rich_help_panel=LOOK)(report_command)
app.add_typer(rounds.models_app, name="models", rich_help_panel=MODELS)
app.command("tune", rich_help_panel=MODELS)(tune_command)
app.command("quickstart", rich_help_panel=TRY)(quickstart_command)
app.command("simulate", rich_help_panel=TRY)(simulate_command)
app.add_typer(datasets_app, name="datasets", rich_help_panel=TRY)
app.command("annotate-sim", rich_help_panel=TRY)(studio.annotate_sim_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
