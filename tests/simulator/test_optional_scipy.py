"""scipy is the simulator's extra: without it, ``chargewatch simulate`` says how to get it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# scipy is installed here; None in sys.modules makes importing it fail as if it were not
_WITHOUT_SCIPY = """
import sys
sys.modules["scipy"] = None
from service.cli import app
app(sys.argv[1:])
"""


def test_simulate_without_scipy_names_the_extra(tmp_path: Path) -> None:
    files = ["--out", str(tmp_path / "events.jsonl"), "--labels", str(tmp_path / "labels.jsonl")]
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SCIPY, "simulate", "--stations", "1", *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "the simulator needs scipy: pip install 'chargewatch[simulator]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "events.jsonl").exists()
