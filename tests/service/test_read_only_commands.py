"""Commands that only read and write the files they are given leave nothing else behind.

``simulate``, ``detect --input`` and ``evaluate`` run with a fresh, empty data directory and a
fresh working directory: neither gains a file the user did not ask for (a pseudonym key, a state
database, a spool).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def files_in(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def test_simulate_detect_and_evaluate_create_only_their_outputs(tmp_path: Path) -> None:
    data_dir, cwd = tmp_path / "data", tmp_path / "cwd"
    data_dir.mkdir()
    cwd.mkdir()
    # no configured key: detect --input must neither need nor create one
    env = {name: value for name, value in os.environ.items() if not name.startswith("CHARGEWATCH_")}
    env["CHARGEWATCH_DATA_DIR"] = str(data_dir)

    def chargewatch(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "chargewatch", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    steps: list[tuple[str, set[str]]] = [
        (
            "simulate --stations 4 --hours 3 --anomaly-rate 0.5 --seed 3"
            " --out events.jsonl --labels labels.jsonl",
            {"events.jsonl", "labels.jsonl"},
        ),
        (
            "detect --input events.jsonl --output flags.jsonl",
            {"events.jsonl", "labels.jsonl", "flags.jsonl"},
        ),
        (
            "evaluate --flags flags.jsonl --labels labels.jsonl --events events.jsonl",
            {"events.jsonl", "labels.jsonl", "flags.jsonl"},
        ),
    ]
    for command, expected in steps:
        chargewatch(*command.split())
        assert files_in(cwd) == expected, command
        assert files_in(data_dir) == set(), command
