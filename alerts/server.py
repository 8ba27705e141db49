"""A local Alertmanager for development, tests and CI: started by pid file, never by systemd.

``LocalAlertmanager(data_dir=...)`` keeps everything under ``data_dir``: ``alertmanager.yml``,
``data/`` (silences and the notification log, which Alertmanager snapshots there on shutdown and
every 15 minutes), ``alertmanager.log`` and ``alertmanager.pid``. It listens on loopback only,
with clustering off (no gossip port). The process is detached (its own session), so it outlives
the command that started it until ``stop()``; ``start()`` on a folder whose Alertmanager is up
reuses it. Debian's ``prometheus-alertmanager`` package (0.25, with ``amtool``) is installed with
apt-get on first use when it is missing and we are root, as ``chargewatch influxd`` does.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from chargewatch.errors import ConfigError, LocalAlertmanagerError

__all__ = [
    "MINIMAL_CONFIG",
    "Binaries",
    "LocalAlertmanager",
    "LocalStatus",
    "check_config",
    "find_or_install_alertmanager",
]

logger = logging.getLogger(__name__)

PACKAGE: Final = "prometheus-alertmanager"
_NAMES: Final = ("alertmanager", "prometheus-alertmanager")  # upstream's name, Debian's
_APT_TIMEOUT_S: Final = 900.0
_POLL_S: Final = 0.05
_LOG_TAIL_LINES: Final = 15
# A configuration that routes everything to a receiver with no integration: alerts are kept and
# shown, nothing is notified. Used when the folder has no alertmanager.yml yet.
MINIMAL_CONFIG: Final = "route:\n  receiver: default\nreceivers:\n  - name: default\n"
# Started through sh so that Alertmanager is not our child (see chargewatch.influx.server).
# Arguments are positional parameters, never pasted into the script.
_LAUNCH_SCRIPT: Final = (
    '"$1" --config.file="$2" --storage.path="$3" --web.listen-address="$4" '
    '--web.external-url="$5" --cluster.listen-address= >"$6" 2>&1 </dev/null & echo $!'
)


@dataclass(frozen=True, slots=True)
class Binaries:
    alertmanager: Path
    amtool: Path


def _which() -> Binaries | None:
    amtool = shutil.which("amtool")
    for name in _NAMES:
        found = shutil.which(name)
        if found is not None and amtool is not None:
            return Binaries(Path(found), Path(amtool))
    return None


def find_or_install_alertmanager() -> Binaries:
    """Alertmanager and ``amtool``: from PATH, else Debian's package installed with apt-get
    when we are root. ``LocalAlertmanagerError`` says what to do when neither works."""
    found = _which()
    if found is not None:
        return found
    apt_get = shutil.which("apt-get")
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if apt_get is None or not is_root:
        raise LocalAlertmanagerError(
            "alertmanager and amtool are not on PATH: install Prometheus Alertmanager (on Debian "
            f"or Ubuntu: `sudo apt-get install {PACKAGE}`) or add their folder to PATH."
        )
    logger.info("alertmanager not found; installing Debian's %s with apt-get", PACKAGE)
    output = _apt_get(apt_get, "install", "-y", PACKAGE)
    if _which() is None:
        _apt_get(apt_get, "update")  # missing or stale package lists (fresh containers)
        output = _apt_get(apt_get, "install", "-y", PACKAGE)
    # The package's postinst may fail to start its service in a container; we never use it.
    found = _which()
    if found is None:
        tail = "\n".join(output.strip().splitlines()[-_LOG_TAIL_LINES:])
        raise LocalAlertmanagerError(f"`apt-get install {PACKAGE}` did not provide them:\n{tail}")
    return found


def _apt_get(apt_get: str, *args: str) -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        completed = subprocess.run(
            [apt_get, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_APT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalAlertmanagerError(f"`apt-get {' '.join(args)}` could not run: {exc}") from exc
    if completed.returncode != 0:
        logger.warning("`apt-get %s` exited with %d", " ".join(args), completed.returncode)
    return completed.stdout + completed.stderr


@dataclass(frozen=True, slots=True)
class LocalStatus:
    """What ``chargewatch alertmanager status`` shows."""

    url: str
    data_dir: Path
    pid: int | None  # None: not running
    ready: bool


class LocalAlertmanager:
    """One local Alertmanager whose files all live in ``data_dir``.

    ``config`` is written to ``data_dir/alertmanager.yml`` at ``start()`` when given; without
    it, an existing file is kept, and a missing one becomes ``MINIMAL_CONFIG``.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int = 9093,
        host: str = "127.0.0.1",
        config: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = host
        self.config = config

    def __repr__(self) -> str:
        return f"LocalAlertmanager(data_dir={str(self.data_dir)!r}, url={self.url!r})"

    @property
    def url(self) -> str:
        return f"http://{self._listen}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "alertmanager.yml"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "alertmanager.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "alertmanager.pid"

    @property
    def pid(self) -> int | None:
        """The pid of this folder's Alertmanager while it runs, else ``None``."""
        pid = self._read_pid()
        return pid if pid is not None and self._is_ours(pid) else None

    def start(self, *, timeout_s: float = 30.0) -> None:
        """Start Alertmanager, or reuse this folder's when it is already up.

        Raises ``LocalAlertmanagerError`` when the port is taken, or when Alertmanager exits or
        is not ready within ``timeout_s`` (quoting the end of its log), and ``ConfigError`` when
        it rejects its configuration.
        """
        pid = self.pid
        if pid is not None:
            self._check_same_address(pid)
            if self.config is not None:
                self.reload(self.config)
            logger.info("reusing alertmanager (pid %d) at %s", pid, self.url)
            self._wait_ready(pid, timeout_s)
            return
        self.pid_path.unlink(missing_ok=True)
        self._check_port_free()
        binaries = find_or_install_alertmanager()
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        pid = self._launch(binaries.alertmanager)
        self.pid_path.write_text(f"{pid}\n", encoding="utf-8")
        logger.info("started alertmanager (pid %d) at %s, data in %s", pid, self.url, self.data_dir)
        try:
            self._wait_ready(pid, timeout_s)
        except LocalAlertmanagerError:
            self._terminate(pid, timeout_s=5.0)
            self.pid_path.unlink(missing_ok=True)
            raise

    def stop(self, *, timeout_s: float = 15.0) -> None:
        """SIGTERM (Alertmanager then writes its silences and notification log to disk),
        SIGKILL after ``timeout_s``; nothing when not running."""
        pid = self.pid
        if pid is not None:
            self._terminate(pid, timeout_s=timeout_s)
            logger.info("stopped alertmanager (pid %d) at %s", pid, self.url)
        self.pid_path.unlink(missing_ok=True)

    def status(self) -> LocalStatus:
        pid = self.pid
        return LocalStatus(self.url, self.data_dir, pid, pid is not None and self._ready())

    def is_running(self) -> bool:
        """Whether this folder's Alertmanager is alive and ready on our port."""
        return self.pid is not None and self._ready()

    def reload(self, config: str) -> None:
        """Write ``config`` and have the running Alertmanager load it (``POST /-/reload``);
        ``ConfigError`` when it refuses it (it then keeps the previous one)."""
        self.config = config
        self._write_config()
        try:
            with httpx.Client(timeout=10.0) as http:
                response = http.post(f"{self.url}/-/reload")
        except httpx.HTTPError as exc:
            raise LocalAlertmanagerError(f"could not reload {self.url}: {exc}") from exc
        if response.status_code != 200:
            raise ConfigError(f"Alertmanager refused {self.config_path}: {response.text.strip()}")

    def amtool(self, *args: str, timeout_s: float = 30.0) -> str:
        """Run ``amtool`` against this Alertmanager; its output, or ``LocalAlertmanagerError``
        quoting it when it fails."""
        amtool = find_or_install_alertmanager().amtool
        command = [str(amtool), f"--alertmanager.url={self.url}", *args]
        try:
            completed = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LocalAlertmanagerError(f"could not run amtool {args[:1]}: {exc}") from exc
        if completed.returncode != 0:
            raise LocalAlertmanagerError(
                f"amtool {' '.join(args[:2])} failed ({completed.returncode}): "
                f"{(completed.stderr or completed.stdout).strip()}"
            )
        return completed.stdout

    # -- internals ------------------------------------------------------------------------------

    @property
    def _listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            text = self.config
        elif self.config_path.exists():
            return
        else:
            text = MINIMAL_CONFIG
        temporary = self.config_path.with_suffix(".yml.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.chmod(0o600)  # it may hold the webhook's password
        temporary.replace(self.config_path)

    def _check_same_address(self, pid: int) -> None:
        if f"--web.listen-address={self._listen}".encode() not in _argv(pid):
            raise LocalAlertmanagerError(
                f"the alertmanager of {self.data_dir} (pid {pid}) listens elsewhere than "
                f"{self._listen}; stop it before starting it with these settings."
            )

    def _check_port_free(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners do
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise LocalAlertmanagerError(
                        f"port {self.port} on {self.host} is already in use by another process; "
                        "stop it or start this Alertmanager on another port."
                    ) from exc
                raise LocalAlertmanagerError(
                    f"cannot listen on {self.host}:{self.port}: {exc}"
                ) from exc

    def _launch(self, binary: Path) -> int:
        shell = shutil.which("sh") or "/bin/sh"
        args = [
            *(shell, "-c", _LAUNCH_SCRIPT, "sh", str(binary), str(self.config_path)),
            *(str(self.storage_dir), self._listen, self.url, str(self.log_path)),
        ]
        try:
            completed = subprocess.run(
                args,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                start_new_session=True,  # no signal meant for our terminal reaches it
                timeout=30.0,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LocalAlertmanagerError(f"could not launch {binary}: {exc}") from exc
        try:
            return int(completed.stdout.strip())
        except ValueError as exc:
            raise LocalAlertmanagerError(
                f"could not launch {binary}: {completed.stderr.strip() or 'no pid came back'}"
            ) from exc

    def _wait_ready(self, pid: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as http:
            while True:
                if not _is_alive(pid):
                    tail = self._log_tail()
                    if "configuration" in tail.lower() and "error" in tail.lower():
                        raise ConfigError(
                            f"Alertmanager refused {self.config_path}; the end of "
                            f"{self.log_path}:\n{tail}"
                        )
                    raise LocalAlertmanagerError(
                        f"alertmanager (pid {pid}) exited while starting at {self.url}; "
                        f"the end of {self.log_path}:\n{tail}"
                    )
                if _is_ready(http, self.url):
                    return
                if time.monotonic() > deadline:
                    raise LocalAlertmanagerError(
                        f"alertmanager (pid {pid}) was not ready at {self.url}/-/ready within "
                        f"{timeout_s:g} s; the end of {self.log_path}:\n{self._log_tail()}"
                    )
                time.sleep(_POLL_S)

    def _ready(self) -> bool:
        with httpx.Client(timeout=1.0) as http:
            return _is_ready(http, self.url)

    def _terminate(self, pid: int, *, timeout_s: float) -> None:
        _signal(pid, signal.SIGTERM)
        if _wait_dead(pid, timeout_s):
            return
        logger.warning(
            "alertmanager (pid %d) ignored SIGTERM for %.0f s; killing it", pid, timeout_s
        )
        _signal(pid, signal.SIGKILL)
        if not _wait_dead(pid, 5.0):
            raise LocalAlertmanagerError(f"alertmanager (pid {pid}) did not die even after SIGKILL")

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """Alive, and an Alertmanager run with our config (a pid file can outlive its process
        and the pid be reused by something else, which we must never signal)."""
        if not _is_alive(pid):
            return False
        argv = _argv(pid)
        if not argv:
            return not Path("/proc/self").exists()  # no procfs: trust the pid file
        name = os.path.basename(argv[0]).decode(errors="replace")
        return name in _NAMES and f"--config.file={self.config_path}".encode() in argv

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty log)"


def _argv(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _is_ready(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(f"{url}/-/ready").status_code == 200
    except httpx.HTTPError:
        return False


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but belongs to someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]  # a zombie has exited


def _wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise LocalAlertmanagerError(
            f"not allowed to signal alertmanager (pid {pid}): {exc}"
        ) from exc


def check_config(path: Path) -> str:
    """Run ``amtool check-config`` on ``path``: its report, or ``ConfigError`` quoting it."""
    amtool = find_or_install_alertmanager().amtool
    try:
        completed = subprocess.run(
            [str(amtool), "check-config", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30.0,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalAlertmanagerError(f"could not run {amtool}: {exc}") from exc
    report = (completed.stdout + completed.stderr).strip()
    if completed.returncode != 0:
        raise ConfigError(f"amtool check-config rejected {path}:\n{report}")
    return report
