"""`chargewatch train` on a month of a 500-station simulated fleet: time, peak memory, and what
the novelty score costs to compute beside the rules.

    .venv/bin/python bench/train.py                       # 500 stations x 30 days
    .venv/bin/python bench/train.py --stations 50 --days 2
    .venv/bin/python bench/train.py --events fleet.jsonl --labels labels.jsonl

The fleet is made by the real command (``chargewatch simulate``, ``bench/_fleet.py``; its time
is printed apart). Training runs in a child process of its own, so its peak resident memory is
training's alone: reading and assembling the file (sampled beyond ``TRAIN_MAX_CELLS`` padded
samples, ``analytics.training``), fitting, calibrating, the novelty forest, scoring the
held-out stations, and registering the version in a scratch data directory. Targets on this
2-core machine: under 5 minutes and under 4 GB.

Scoring cost: on the training sample, its rows grouped by length as detection's assembler
hands them out (batches of at most ``MAX_CELLS`` padded samples), all eleven rule detectors
(fitted on it, as a detection window is) against the novelty score (features and forest), each
the best of three, in seconds per million samples; the ratio is novelty over rules, measured
in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._fleet import simulate_fleet

TARGET_SECONDS = 300.0
TARGET_BYTES = 4 * 1024**3
ROUNDS = 3


def child(events: Path, labels: Path | None, data_dir: Path) -> None:
    """Train as ``chargewatch train`` does, then time scoring; print one JSON line."""
    from datetime import UTC, datetime

    import numpy as np

    from analytics.detectors import default_detectors, detect, fit_detectors
    from analytics.learned import LearnedState
    from analytics.training import TRAIN_MAX_CELLS, history_from_file, train
    from chargewatch.events import EventDecoder
    from chargewatch.state import StateStore
    from ingest.pseudonym import Pseudonymizer
    from models.evaluate import read_labels
    from models.registry import Registry
    from models.train import register_candidate

    began = time.perf_counter()
    history = history_from_file(
        events,
        EventDecoder(Pseudonymizer(b"bench-train-key" * 3)),
        labels_path=labels,
        max_cells=TRAIN_MAX_CELLS,  # as `chargewatch train` reads
    )
    read_s = time.perf_counter() - began
    known = read_labels(labels) if labels is not None else None
    candidate = train(history, labels=known)
    fit_s = time.perf_counter() - began - read_s
    state = StateStore(f"sqlite:///{data_dir / 'state.db'}")
    registry = Registry(data_dir / "models", state.engine)
    info = register_candidate(registry, candidate, created_at=datetime.now(UTC))
    total_s = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak, cpu_s = usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime
    model = LearnedState.from_model(registry.load(info.version))
    state.close()
    assert model.novelty is not None, "training fitted no novelty model"

    batch = history.batch
    samples = int(batch.valid.sum())
    rules = fit_detectors(batch, default_detectors())
    # rows of like length together, as detection's assembler hands them out (little padding)
    groups = _groups(batch)
    now_ns = history.now_ns
    rules_s = _best(lambda: [detect(g, now_ns=now_ns, detectors=rules) for g in groups])
    novelty = model.novelty
    novelty_s = _best(lambda: [novelty.score(g) for g in groups])
    scores = np.concatenate([novelty.score(g) for g in groups])
    print(
        json.dumps(
            {
                "read_s": read_s,
                "fit_s": fit_s,
                "total_s": total_s,
                "cpu_s": cpu_s,  # on a shared machine, what the wall time would be alone
                "peak_bytes": peak,
                "version": info.version,
                "training": {
                    k: candidate.training[k] for k in ("rows", "sessions", "samples", "lines")
                },
                "sample": candidate.training["sample"],
                "thresholds_raised": [
                    kind
                    for kind, entry in candidate.calibration["kinds"].items()
                    if entry["threshold"] > entry["floor"]
                ],
                "scored_rows": batch.n_sessions,
                "scored_samples": samples,
                "rules_s_per_m": rules_s / samples * 1e6,
                "novelty_s_per_m": novelty_s / samples * 1e6,
                "novelty_p50": float(np.nanmedian(scores)),
                "novelty_p99": float(np.nanpercentile(scores, 99)),
            }
        )
    )


def _groups(batch: Any) -> list[Any]:
    """The batch's rows by length, in batches of at most ``MAX_CELLS`` padded samples, each
    trimmed to its longest row."""
    import numpy as np

    from analytics.assemble import MAX_CELLS
    from analytics.training import _trimmed

    order = np.argsort(batch.n_samples, kind="stable")
    groups, begin = [], 0
    for end in range(1, order.size + 1):
        longest = max(int(batch.n_samples[order[end - 1]]), 1)
        if end - begin > 1 and (end - begin) * longest > MAX_CELLS:
            groups.append(_trimmed(batch.take(np.sort(order[begin : end - 1]))))
            begin = end - 1
    groups.append(_trimmed(batch.take(np.sort(order[begin:]))))
    return groups


def _best(run: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--events", type=Path, help="an event file instead of simulating")
    parser.add_argument("--labels", type=Path, help="with --events: its labels")
    parser.add_argument(
        "--child", nargs=3, metavar=("EVENTS", "LABELS", "DATA_DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        events, labels, data_dir = args.child
        child(Path(events), Path(labels) if labels != "-" else None, Path(data_dir))
        return
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        folder = Path(scratch)
        if args.events is not None:
            events, labels = args.events, args.labels
            what = str(events)
        else:
            began = time.perf_counter()
            events = simulate_fleet(folder, args.stations, args.days * 24, seed=args.seed)
            labels = folder / "labels.jsonl"
            what = f"{args.stations} stations x {args.days:g} days (seed {args.seed})"
            print(
                f"simulated {what} in {time.perf_counter() - began:.0f} s, "
                f"{events.stat().st_size / 1e9:.2f} GB"
            )
        data_dir = folder / "data"
        data_dir.mkdir()
        command = [
            sys.executable,
            __file__,
            "--child",
            str(events),
            str(labels) if labels is not None else "-",
            str(data_dir),
        ]
        began = time.perf_counter()
        done = subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "CHARGEWATCH_DATA_DIR": str(data_dir)},
        )
        wall = time.perf_counter() - began
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    _report(what, wall, figures)


def _report(what: str, wall: float, f: dict[str, Any]) -> None:
    peak = float(f["peak_bytes"])
    total = float(f["total_s"])
    print(f"train on {what}: {f['training']}")
    print(f"  sample: {f['sample']}")
    print(
        f"  read and assembled {float(f['read_s']):.1f} s, fitted/calibrated/novelty/held-out "
        f"{float(f['fit_s']):.1f} s, with registering {total:.1f} s "
        f"(process {wall:.1f} s with imports; {float(f['cpu_s']):.1f} s of CPU): "
        f"{'within' if wall <= TARGET_SECONDS else 'OVER'} the {TARGET_SECONDS:.0f} s target"
    )
    print(
        f"  peak memory {peak / 1024**3:.2f} GB: "
        f"{'within' if peak <= TARGET_BYTES else 'OVER'} the 4 GB target"
    )
    rules = float(f["rules_s_per_m"])
    novelty = float(f["novelty_s_per_m"])
    print(
        f"  scoring {f['scored_rows']} rows, {f['scored_samples']} samples (best of {ROUNDS}): "
        f"rules {rules:.3f} s per million samples, novelty {novelty:.3f} s per million "
        f"({novelty / rules:.2f}x the rules)"
    )
    print(
        f"  novelty p50 {float(f['novelty_p50']):.3f}, p99 {float(f['novelty_p99']):.3f}; "
        f"thresholds raised: {f['thresholds_raised'] or 'none (no negatives given)'}"
    )


if __name__ == "__main__":
    main()
