"""``labelloop simulate``: the offline active-learning simulation from the command line."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)


def simulate_command(
    dataset: str = typer.Option("mnist", help="digits (1,797 8x8) or mnist (5,000 28x28)."),
    strategy: str = typer.Option(
        "margin", help="Query strategy: random, least_confident, margin, entropy, "
                       "ranked_batch, core_set, badge."),
    seed: int = typer.Option(0, help="Seeds the initial sample, training and random choices."),
    initial: int = typer.Option(20, help="Random labels to start from (cold start)."),
    batch: int = typer.Option(20, help="Labels asked for per step."),
    budget: int = typer.Option(1000, help="Stop when this many labels were used."),
    out: Path = typer.Option(Path("results.json"), help="Where to write the curve (JSON)."),
    plot: Path | None = typer.Option(None, help="Also write the learning curve as a PNG."),
) -> None:
    """Simulate active learning with an oracle on a bundled real dataset."""
    # Imported here: it trains models (torch), which `labelloop --help` should not load.
    from pipeline.simulate import SimulationSettings, plot_curves, simulate, write_results

    settings = SimulationSettings(dataset=dataset, strategy=strategy, seed=seed,
                                  initial=initial, batch=batch, budget=budget)
    console.print(f"simulate: {dataset}, strategy {strategy}, seed {seed}, "
                  f"{initial} initial + {batch}/step up to {budget} labels")

    def show(point: dict) -> None:
        console.print(f"  {point['labels']:5d} labels  test accuracy {point['accuracy']:.4f}")

    try:
        results = simulate(settings, on_step=show)
    except (ValueError, ImportError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    write_results(results, out)
    console.print(f"wrote {out}")
    if plot is not None:
        plot_curves([results], plot, title=f"{dataset}: {strategy}, seed {seed}")
        console.print(f"wrote {plot}")
