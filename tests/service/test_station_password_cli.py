"""``chargewatch stations set-password``: only for identities the OCPP endpoint accepts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargewatch", *args],
        input=stdin,
        env={**os.environ, "CHARGEWATCH_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("station_id", "reason"),
    [
        ("CP 1", "may hold only"),
        ("CP/1", "may hold only"),
        ("x" * 49, "longer than 48"),
    ],
)
def test_an_identity_the_endpoint_refuses_gets_no_password(
    tmp_path: Path, station_id: str, reason: str
) -> None:
    done = run(tmp_path, "stations", "set-password", station_id, stdin="a-long-station-password\n")
    assert done.returncode == 2
    assert "station_id" in done.stderr and reason in done.stderr
    assert not (tmp_path / "state.db").exists()


def test_a_valid_identity_gets_its_password(tmp_path: Path) -> None:
    done = run(tmp_path, "stations", "set-password", "CP-1", stdin="a-long-station-password\n")
    assert done.returncode == 0, done.stderr
    assert "password set for CP-1" in done.stdout
