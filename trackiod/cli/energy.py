"""``trackiod energy`` and ``trackiod card``: GPU energy per run, and the model-card YAML."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from trackio_shim.errors import UsageError
from trackio_shim.settings import TrackiodSettings
from trackiod import __version__
from trackiod.cli.common import reader
from trackiod.cli.format import duration, print_table
from trackiod.read.runs import find_run

DEFAULT_TRAINING_TYPE = "pre-training"
TRAINING_TYPES = ("pre-training", "fine-tuning")


def _gpus(report: dict[str, Any]) -> str:
    if not report["gpus"]:
        return "-"
    return ",".join(str(g["index"]) for g in report["gpus"])


def hardware_used(report: dict[str, Any]) -> str:
    """``"2 x NVIDIA A100-SXM4-80GB (12.5 GPU-hours)"``: GPU models, counts and GPU-hours."""
    counts: dict[str, int] = {}
    for gpu in report["gpus"]:
        counts[gpu["name"]] = counts.get(gpu["name"], 0) + 1
    models = ", ".join(f"{n} x {name}" for name, n in counts.items())
    return f"{models} ({report['gpu_hours']:.3g} GPU-hours)"


def card_yaml(report: dict[str, Any], training_type: str, location: str) -> str:
    """The ``co2_eq_emissions`` block of a Hugging Face model card (emissions in grams, as the Hub expects).

    Raises:
        UsageError: the run has no GPU energy recorded, or ``training_type`` is not one the Hub knows.
    """
    if not report["recorded"]:
        raise UsageError(
            f"run {report['project']}/{report['id']} has no GPU energy recorded (no GPU was seen in use by it); "
            "there is nothing to put in a model card"
        )
    if training_type not in TRAINING_TYPES:
        raise UsageError(f"training type {training_type!r} must be one of {', '.join(TRAINING_TYPES)}")
    grams = report["co2eq_kg"] * 1000
    method = "NVML energy counters" if report["estimated_fraction"] < 0.5 else "NVML power readings"
    source = (
        f"trackiod {__version__}: {method}, {report['gpu_kwh']:.4g} kWh of GPU energy, "
        f"grid intensity {report['grid_g_per_kwh']:g} gCO2eq/kWh"
    )
    lines = [
        "co2_eq_emissions:",
        f"  emissions: {grams:.6g}",
        f"  source: {json.dumps(source)}",
        f"  training_type: {json.dumps(training_type)}",
        f"  geographical_location: {json.dumps(location or 'unknown')}",
        f"  hardware_used: {json.dumps(hardware_used(report))}",
    ]
    return "\n".join(lines) + "\n"


def cmd_energy(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.read.energy import energy_reports, run_energy  # numpy: only for this command

    with reader(settings) as conn:
        if args.run:
            reports = [run_energy(conn, find_run(conn, args.run), args.grid_intensity)]
        else:
            reports = energy_reports(conn, args.project, args.grid_intensity)
    if args.json:
        print(json.dumps(reports if not args.run else reports[0], indent=2))
        return 0
    if not reports:
        print("no runs" + (f" in project {args.project!r}" if args.project else ""))
        return 0
    table: list[tuple[Any, ...]] = [
        ("project", "id", "name", "state", "duration", "GPUs", "GPU-hours", "kWh", "kg CO2eq")
    ]
    for r in reports:
        recorded = r["recorded"]
        table.append(
            (
                r["project"],
                r["id"],
                r["name"],
                r["state"],
                duration(r["duration_s"]),
                _gpus(r),
                f"{r['gpu_hours']:.3f}" if recorded else "-",
                f"{r['gpu_kwh']:.4f}" if recorded else "-",
                f"{r['co2eq_kg']:.4f}" if recorded and r["co2eq_kg"] is not None else "-",
            )
        )
    print_table(table)
    if args.run and reports[0]["recorded"]:
        r = reports[0]
        print()
        for g in r["gpus"]:
            print(
                f"GPU {g['index']} {g['name']} ({g['uuid']}, {g['host']}): {g['joules'] / 3.6e6:.4f} kWh, "
                f"{g['gpu_hours']:.3f} GPU-hours, seen by {' and '.join(g['seen_by'])}"
            )
        print(
            f"grid intensity {r['grid_g_per_kwh']:g} gCO2eq/kWh; "
            f"{r['estimated_fraction']:.0%} of the energy from power readings"
        )
    elif any(not r["recorded"] for r in reports):
        print("\n'-': no GPU energy recorded for the run (no GPU seen in use, or no NVML on its node)")
    return 0


def cmd_card(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.read.energy import run_energy  # numpy: only for this command

    with reader(settings) as conn:
        run = find_run(conn, args.run)
        report = run_energy(conn, run, args.grid_intensity)
    training_type = args.training_type or run["config"].get("training_type")
    if training_type not in TRAINING_TYPES:
        training_type = DEFAULT_TRAINING_TYPE
        print(
            f"trackiod: training_type defaults to {training_type}; pass --training-type fine-tuning if it was one",
            file=sys.stderr,
        )
    location = args.location or report["location"] or settings.location
    if not location:
        print("trackiod: geographical_location is unknown; pass --location or set TRACKIOD_LOCATION", file=sys.stderr)
    print(card_yaml(report, training_type, location), end="")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``energy`` and ``card`` to the ``trackiod`` parser's subcommands."""
    energy = sub.add_parser("energy", parents=[common], help="GPU energy and emissions per run")
    energy.add_argument("run", nargs="?", help="one run: project/id (or an id unique across projects)")
    energy.add_argument("--project", help="only this project's runs")
    energy.add_argument("--grid-intensity", type=float, help="gCO2eq/kWh instead of the one recorded with each run")
    energy.add_argument("--json", action="store_true")
    energy.set_defaults(func=cmd_energy)
    card = sub.add_parser("card", parents=[common], help="the co2_eq_emissions YAML for a Hugging Face model card")
    card.add_argument("run", help="project/id (or an id unique across projects)")
    card.add_argument("--training-type", choices=TRAINING_TYPES, help="default: config's, else pre-training")
    card.add_argument("--location", help="geographical_location (default: TRACKIOD_LOCATION when the run was recorded)")
    card.add_argument("--grid-intensity", type=float, help="gCO2eq/kWh instead of the one recorded with the run")
    card.set_defaults(func=cmd_card)
