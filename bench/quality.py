"""Detection quality over several simulated fleets: per kind, pooled and worst-seed figures.

For each seed: `chargewatch simulate` (with the stations' metadata, `--stations-out`),
`chargewatch detect --input` (with it, `--stations`), `chargewatch evaluate --json`, in a
temporary folder. Then precision and recall per kind over all seeds together (a
flag counts when its (session, kind) has a label, CONTRACTS.md section 5), the worst seed's, and
the normal sessions flagged. Use seeds the detectors were never tuned on.

    .venv/bin/python bench/quality.py --seeds 9401 9402 9403 --stations 200 --hours 24

``--blind`` takes the fleets from the independently written generator instead
(``bench/blind_fleet.py --same-site-overlaps labelled``: real car curves, mixed station styles),
judged without station metadata unless ``--declared`` (as data from outside comes), with a share
of its stations sampling every 2-15 min, counting in 0.01-1 kWh steps or stamping whole minutes
(``--sparse-sampling``, ``--coarse-meters``, ``--minute-stamps``):

    .venv/bin/python bench/quality.py --blind --seeds 131 132 --stations 150 --hours 24 \
        --anomaly-rate 0.3 --sparse-sampling 0.3 --coarse-meters 0.3 --minute-stamps 0.2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def chargewatch(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "chargewatch", *args], capture_output=True, text=True, check=False
    )
    if done.returncode not in (0, 1):  # 1: some lines rejected (none expected here)
        raise SystemExit(f"chargewatch {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


BLIND_FLEET = Path(__file__).resolve().parent / "blind_fleet.py"


def evaluate_seed(
    folder: Path, seed: int, stations: int, hours: float, rate: float, blind: list[str] | None
) -> dict[str, Any]:
    """One fleet made, judged and evaluated; ``blind``: the independent generator's style
    options (None: ``chargewatch simulate``; a list ending in ``--declared``: with metadata)."""
    events, labels, flags = folder / "events.jsonl", folder / "labels.jsonl", folder / "flags.jsonl"
    stations_csv = folder / "stations.csv"  # sites and declared ratings, as an operator imports
    fleet = ["--stations", str(stations), "--hours", str(hours), "--seed", str(seed)]
    fleet += ["--anomaly-rate", str(rate)]
    out = ["--out", str(events), "--labels", str(labels), "--stations-out", str(stations_csv)]
    declared = True
    if blind is None:
        chargewatch("simulate", *fleet, *out)
    else:
        declared = "--declared" in blind
        style = [a for a in blind if a != "--declared"]
        command = [sys.executable, str(BLIND_FLEET), *fleet, *out, *style]
        command += ["--same-site-overlaps", "labelled"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    metadata = ["--stations", str(stations_csv)] if declared else []
    chargewatch("detect", "--input", str(events), "--output", str(flags), *metadata)
    files = ["--flags", str(flags), "--labels", str(labels), "--events", str(events)]
    result: dict[str, Any] = json.loads(chargewatch("evaluate", *files, "--json"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--anomaly-rate", type=float, default=0.05)
    parser.add_argument("--blind", action="store_true", help="bench/blind_fleet.py's fleets")
    parser.add_argument("--declared", action="store_true", help="--blind: with metadata")
    for share in ("--sparse-sampling", "--coarse-meters", "--minute-stamps"):
        parser.add_argument(share, type=float, default=0.0, help="--blind: share of stations")
    args = parser.parse_args()
    blind: list[str] | None = None
    if args.blind:
        blind = ["--sparse-sampling", str(args.sparse_sampling)]
        blind += ["--coarse-meters", str(args.coarse_meters)]
        blind += ["--minute-stamps", str(args.minute_stamps)]
        blind += ["--declared"] if args.declared else []

    pooled: dict[str, list[int]] = {}  # kind -> flags, true positives, labels, labels found
    worst: dict[str, list[float]] = {}  # kind -> worst precision, worst recall
    normal = [0, 0]
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            result = evaluate_seed(
                Path(tmp), seed, args.stations, args.hours, args.anomaly_rate, blind
            )
        for k in result["kinds"]:
            p = pooled.setdefault(k["kind"], [0, 0, 0, 0])
            p[0] += k["flags"]
            p[1] += k["true_positives"]
            p[2] += k["labels"]
            p[3] += k["labels_found"]
            w = worst.setdefault(k["kind"], [1.0, 1.0])
            if k["precision"] is not None:
                w[0] = min(w[0], k["precision"])
            if k["recall"] is not None:
                w[1] = min(w[1], k["recall"])
        normal[0] += result["normal_sessions_flagged"]
        normal[1] += result["normal_sessions"]
        print(f"seed {seed}: overall {result['overall']}", flush=True)

    source = "independent" if args.blind else "simulated"
    print(f"\n{len(args.seeds)} {source} fleets of {args.stations} stations x {args.hours:g} h")
    for kind, (flags, tp, labels, found) in sorted(pooled.items()):
        precision = f"{tp / flags:.3f}" if flags else "  -  "
        recall = f"{found / labels:.3f}" if labels else "  -  "
        print(
            f"{kind:20s} flags {flags:4d} labels {labels:4d}  precision {precision}"
            f"  recall {recall}  worst seed: {worst[kind][0]:.3f} / {worst[kind][1]:.3f}"
        )
    print(f"normal sessions flagged: {normal[0]} of {normal[1]} (target <= 0.5 %)")


if __name__ == "__main__":
    main()
