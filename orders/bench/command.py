"""`orders bench`: throughput, latency and CPU per order against Celery's no-op ceilings and a blocking
baseline.

Runs every phase on the services it starts itself (or on given endpoints), each figure the median of
``--repeat`` runs with min and max; shows one progress line per phase, then the tables (or JSON).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path

import click

from orders.bench.options import NEEDS, PHASES, BenchOptions


def resolve_phases(only: str) -> tuple[str, ...]:
    """The phases to run, in run order; ``only`` is comma-separated (empty = all). Adds prerequisites."""
    wanted = {p.strip() for p in only.split(",") if p.strip()} or set(PHASES)
    unknown = wanted - set(PHASES)
    if unknown:
        raise click.BadParameter(
            f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}"
        )
    wanted |= {NEEDS[p] for p in wanted if p in NEEDS}
    return tuple(p for p in PHASES if p in wanted)


@click.command()
@click.option("--orders", default=20_000, show_default=True, help="Orders (or no-op tasks) per run.")
@click.option("--repeat", default=3, show_default=True, help="Runs per figure: the median, min and max.")
@click.option("--workers", default=2, show_default=True, help="Solo worker processes of the layout measured.")
@click.option("--baseline-orders", default=200, show_default=True,
              help="Orders each baseline run processes (the first of the failure runs' orders).")  # fmt: skip
@click.option("--seed", default=16, show_default=True, help="Failure seed of the 10% runs and the baseline.")
@click.option("--only", default="", help=f"Comma-separated phases to run: {', '.join(PHASES)} (default all).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("docs/benchmarks.json"),
              show_default=True, help="Write the JSON results here.")  # fmt: skip
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="Also write this Markdown report, with bench-scaling.png beside it.")  # fmt: skip
@click.option("--capacity", type=click.Path(path_type=Path), default=None,
              help="Also write the capacity tables into this file (docs/scaling.md).")  # fmt: skip
@click.option("--from-json", type=click.Path(exists=True, path_type=Path), default=None,
              help="Measure nothing: render the table (and --report) from these results.")  # fmt: skip
@click.option("--merge", "merge_into", type=click.Path(exists=True, path_type=Path), default=None,
              help="Keep these earlier results; the phases run now replace theirs.")  # fmt: skip
@click.option("--kafka", default=None, help="Use this Kafka bootstrap instead of an embedded Tansu.")
@click.option(
    "--redis", "redis_url", default=None, help="Use this Redis (redis://host:port) instead of one of its own."
)
@click.option("--registry", default=None, help="Use this schema registry URL instead of the dev one.")
def bench(
    orders: int, repeat: int, workers: int, baseline_orders: int, seed: int, only: str, as_json: bool,
    output: Path, report: Path | None, capacity: Path | None, from_json: Path | None, merge_into: Path | None,
    kafka: str | None, redis_url: str | None, registry: str | None,
) -> None:  # fmt: skip
    """Throughput, latency and CPU per order against Celery's no-op ceilings and a blocking baseline."""
    from rich.console import Console

    from orders.bench.report import table, write_report
    from orders.bench.rig import BenchError, Endpoints
    from orders.bench.runner import run_bench
    from orders.stack.stack import StackError

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if from_json is not None:
        results = json.loads(from_json.read_text())
    else:
        given = [e for e in (kafka, redis_url, registry) if e]
        if given and len(given) != 3:
            raise click.UsageError("give all of --kafka, --redis and --registry, or none")
        if min(orders, repeat, workers, baseline_orders) < 1:
            raise click.UsageError("--orders, --repeat, --workers and --baseline-orders must be positive")
        endpoints = Endpoints(kafka, redis_url, registry) if kafka and redis_url and registry else None
        options = BenchOptions(orders, repeat, workers, baseline_orders, resolve_phases(only), seed)
        command = "orders " + shlex.join(sys.argv[1:])
        try:
            results = run_bench(options, endpoints, command)
        except (BenchError, StackError, TimeoutError) as exc:
            raise click.ClickException(str(exc)) from exc
        if merge_into is not None:
            from orders.bench.merge import merge_results

            results = merge_results(json.loads(merge_into.read_text()), results)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
    if report is not None:
        try:
            write_report(results, report)
        except ModuleNotFoundError as exc:
            if exc.name != "matplotlib":
                raise
            hint = "--report draws its plot with matplotlib: pip install -e '.[bench]'"
            raise click.ClickException(hint) from exc
    if capacity is not None:
        from orders.bench.capacity import write_capacity

        write_capacity(results, capacity)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        Console().print(table(results))
