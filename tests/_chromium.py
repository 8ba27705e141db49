"""Headless Chromium for tests that must see a page as a browser renders it.

Debian's ``chromium`` is not on a fresh machine: like ``find_or_install_influxd`` does for
InfluxDB, ``find_or_install_chromium`` installs the package with apt-get when the tests run as
root (CI on a fresh machine), and otherwise skips the test, saying what is missing. The
install is once per machine; a page then renders in a second or two.

``dump_dom`` runs Chromium headless on a local file and returns the DOM after its scripts ran
(``--dump-dom``, after ``--virtual-time-budget``: virtual time lets every image load and the
``load`` event fire, without waiting in real time). Chromium is started with everything that
would reach the network or the user's profile turned off, in a new profile folder each time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

__all__ = ["dump_dom", "find_or_install_chromium"]

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# The package and its libraries are ~100 MB: a slow mirror takes minutes.
_APT_TIMEOUT_S = 1200.0
# apt waits this long for another apt-get (another test run, a person) to release its lock.
_APT_LOCK_WAIT_S = 300
# Rendering a small static page takes a second or two; a hung browser must not hang the suite.
_RENDER_TIMEOUT_S = 60.0
# Virtual time given to the page: local images and the load event need a few ms of it.
VIRTUAL_TIME_MS = 5000


def _found() -> Path | None:
    for candidate in CHROMIUM_PATHS:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    found = shutil.which("chromium")
    return Path(found) if found else None


def _apt_get(apt_get: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [apt_get, "-o", f"DPkg::Lock::Timeout={_APT_LOCK_WAIT_S}", *args],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_APT_TIMEOUT_S,
        check=False,
    )


def find_or_install_chromium() -> Path:
    """Chromium's binary: found, else installed from Debian's ``chromium`` package when
    running as root; otherwise the test is skipped with the reason."""
    found = _found()
    if found is not None:
        return found
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed (as root the tests install it: apt-get install)")
    done = _apt_get(apt_get, "install", "-y", "--no-install-recommends", "chromium")
    if _found() is None:  # the package lists may be missing or stale (fresh containers)
        _apt_get(apt_get, "update")
        done = _apt_get(apt_get, "install", "-y", "--no-install-recommends", "chromium")
    found = _found()
    if found is None:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        pytest.fail(f"`apt-get install chromium` did not provide chromium:\n{tail}")
    return found


def dump_dom(page: Path) -> str:
    """The DOM of ``page`` (a local HTML file) after Chromium headless rendered it."""
    chromium = find_or_install_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        args = [
            str(chromium),
            "--headless",
            "--no-sandbox",  # root in a container: the sandbox needs user namespaces
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        ]
        done = subprocess.run(
            [*args, "--dump-dom", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=_RENDER_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0 or not done.stdout.strip():
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise AssertionError(f"chromium exited {done.returncode} without a DOM:\n{tail}")
    return done.stdout
