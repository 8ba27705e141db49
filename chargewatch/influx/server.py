"""A local InfluxDB 1.x for development, tests and CI: started by pid file, never by systemd.

``LocalInfluxd(data_dir=...)`` keeps everything under ``data_dir``: ``influxdb.conf``,
``meta/``, ``data/``, ``wal/``, ``influxd.log`` and ``influxd.pid``. The server is detached (its
own session, reparented away from the caller), so it outlives the command that started it until
``stop()``; ``start()`` on a data folder whose server is still up reuses it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

import httpx

from chargewatch.errors import InfluxdError, InfluxError
from chargewatch.influx.client import InfluxClient, quote_ident, quote_literal

__all__ = ["LocalInfluxd", "find_or_install_influxd", "free_port"]

logger = logging.getLogger(__name__)

_APT_TIMEOUT_S: Final = 900.0
_POLL_S: Final = 0.05
_LOG_TAIL_LINES: Final = 15

# Started through sh so that influxd is not our child: nothing of ours has to reap it, and it
# keeps running after the Python process that started it has exited. Arguments are passed as
# positional parameters, never pasted into the script.
_LAUNCH_SCRIPT: Final = '"$1" -config "$2" >"$3" 2>&1 </dev/null & echo $!'


def find_or_install_influxd() -> Path:
    """The ``influxd`` binary: from PATH, else installed with apt-get when we are root.

    Raises ``InfluxdError`` saying what to do when it is neither there nor installable.
    """
    found = shutil.which("influxd")
    if found is not None:
        return Path(found)
    apt_get = shutil.which("apt-get")
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if apt_get is None or not is_root:
        raise InfluxdError(
            "influxd is not on PATH: install InfluxDB 1.x (on Debian or Ubuntu: "
            "`sudo apt-get install influxdb`) or add the folder holding influxd to PATH."
        )
    logger.info("influxd not found; installing Debian's influxdb package with apt-get")
    output = _apt_get(apt_get, "install", "-y", "influxdb")
    if shutil.which("influxd") is None:
        # The package lists may be missing or stale (fresh containers): refresh, then retry.
        _apt_get(apt_get, "update")
        output = _apt_get(apt_get, "install", "-y", "influxdb")
    # The package's postinst may fail to start the service in a container, which makes apt-get
    # report an error although influxd is installed; we never use the service, so that is fine.
    found = shutil.which("influxd")
    if found is None:
        tail = "\n".join(output.strip().splitlines()[-_LOG_TAIL_LINES:])
        raise InfluxdError(f"`apt-get install influxdb` did not provide influxd:\n{tail}")
    return Path(found)


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
        raise InfluxdError(f"`apt-get {' '.join(args)}` could not run: {exc}") from exc
    if completed.returncode != 0:
        logger.warning("`apt-get %s` exited with %d", " ".join(args), completed.returncode)
    return completed.stdout + completed.stderr


class LocalInfluxd:
    """One local ``influxd`` whose files all live in ``data_dir``.

    With ``auth_enabled=True`` the HTTP API requires credentials; create the first admin with
    ``create_admin_user`` (InfluxDB 1.x allows that one statement without credentials while no
    admin exists).
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int = 8086,
        host: str = "127.0.0.1",
        auth_enabled: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = host
        self.auth_enabled = auth_enabled

    def __repr__(self) -> str:
        return f"LocalInfluxd(data_dir={str(self.data_dir)!r}, url={self.url!r})"

    @property
    def url(self) -> str:
        return f"http://{_host_port(self.host, self.port)}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "influxdb.conf"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "influxd.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "influxd.pid"

    @property
    def pid(self) -> int | None:
        """The pid of this folder's influxd while it runs, else ``None``."""
        pid = self._read_pid()
        return pid if pid is not None and self._is_our_influxd(pid) else None

    def start(self, *, timeout_s: float = 30.0) -> None:
        """Start influxd, or reuse the one of this folder when it is already up.

        Raises ``InfluxdError`` when the port is taken by another process, or when influxd dies
        or does not answer ``/ping`` within ``timeout_s`` (quoting the end of its log).
        """
        pid = self.pid
        if pid is not None:
            self._check_same_settings()
            logger.info("reusing influxd (pid %d) at %s", pid, self.url)
            self._wait_ready(pid, timeout_s)
            return
        self.pid_path.unlink(missing_ok=True)
        self._check_port_free()
        binary = find_or_install_influxd()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config_text(), encoding="utf-8")
        pid = self._launch(binary)
        self.pid_path.write_text(f"{pid}\n", encoding="utf-8")
        logger.info("started influxd (pid %d) at %s, data in %s", pid, self.url, self.data_dir)
        try:
            self._wait_ready(pid, timeout_s)
        except InfluxdError:
            self._terminate(pid, timeout_s=5.0)
            self.pid_path.unlink(missing_ok=True)
            raise

    def stop(self, *, timeout_s: float = 15.0) -> None:
        """SIGTERM this folder's influxd, SIGKILL it after ``timeout_s``; nothing if not running."""
        pid = self.pid
        if pid is not None:
            self._terminate(pid, timeout_s=timeout_s)
            logger.info("stopped influxd (pid %d) at %s", pid, self.url)
        self.pid_path.unlink(missing_ok=True)

    def is_running(self) -> bool:
        """Whether this folder's influxd is alive and answers ``/ping`` on our port."""
        return self.pid is not None and self._answers_ping()

    def create_admin_user(self, username: str, password: str) -> None:
        """Create an admin user (idempotent for the same password).

        Credentials are sent with the statement, so this also works once an admin exists.
        """
        statement = (
            f"CREATE USER {quote_ident(username)} WITH PASSWORD {quote_literal(password)} "
            "WITH ALL PRIVILEGES"
        )
        client = InfluxClient(
            url=self.url, database="_internal", username=username, password=password, max_retries=0
        )
        with client:
            try:
                client.query(statement)
            except InfluxError as exc:
                raise InfluxdError(f"could not create the admin user at {self.url}: {exc}") from exc

    # -- internals ------------------------------------------------------------------------------

    def _config_text(self) -> str:
        rpc_port = free_port(self.host)
        auth = "true" if self.auth_enabled else "false"

        def path(name: str) -> str:
            return json.dumps(str(self.data_dir / name))  # a valid TOML basic string

        return f"""\
{self._settings_line()}
# Upstream 1.x reads reporting-disabled; Debian's build renamed it reporting-enabled. Each
# ignores the other's key, so both are set.
reporting-disabled = true
reporting-enabled = false
# The backup/RPC service: 8088 by default, which would clash between instances.
bind-address = {json.dumps(_host_port(self.host, rpc_port))}

[meta]
  dir = {path("meta")}
  logging-enabled = false

[data]
  dir = {path("data")}
  wal-dir = {path("wal")}
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = {json.dumps(_host_port(self.host, self.port))}
  auth-enabled = {auth}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  enabled = false
  log-enabled = false
"""

    def _settings_line(self) -> str:
        auth = "true" if self.auth_enabled else "false"
        return f"# chargewatch LocalInfluxd: http={_host_port(self.host, self.port)} auth={auth}"

    def _check_same_settings(self) -> None:
        try:
            first_line = self.config_path.read_text(encoding="utf-8").partition("\n")[0]
        except OSError:
            first_line = ""
        if first_line != self._settings_line():
            raise InfluxdError(
                f"the influxd of {self.data_dir} runs with other settings ({first_line!r}); "
                "stop it before starting it with these."
            )

    def _check_port_free(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As Go's listeners do, so that a port in TIME_WAIT does not count as taken.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise InfluxdError(
                        f"port {self.port} on {self.host} is already in use by another process; "
                        "stop it or start this InfluxDB on another port."
                    ) from exc
                raise InfluxdError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc

    def _launch(self, binary: Path) -> int:
        shell = shutil.which("sh") or "/bin/sh"
        args = [shell, "-c", _LAUNCH_SCRIPT, "sh", str(binary), str(self.config_path)]
        try:
            completed = subprocess.run(
                [*args, str(self.log_path)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                start_new_session=True,  # no signal meant for our terminal reaches influxd
                timeout=30.0,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InfluxdError(f"could not launch {binary}: {exc}") from exc
        try:
            return int(completed.stdout.strip())
        except ValueError as exc:
            raise InfluxdError(
                f"could not launch {binary}: {completed.stderr.strip() or 'no pid came back'}"
            ) from exc

    def _wait_ready(self, pid: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as http:
            while True:
                if not _is_alive(pid):
                    raise InfluxdError(
                        f"influxd (pid {pid}) exited while starting at {self.url}; "
                        f"the end of {self.log_path}:\n{self._log_tail()}"
                    )
                if _pings(http, self.url):
                    return
                if time.monotonic() > deadline:
                    raise InfluxdError(
                        f"influxd (pid {pid}) did not answer {self.url}/ping within "
                        f"{timeout_s:g} s; the end of {self.log_path}:\n{self._log_tail()}"
                    )
                time.sleep(_POLL_S)

    def _answers_ping(self) -> bool:
        with httpx.Client(timeout=1.0) as http:
            return _pings(http, self.url)

    def _terminate(self, pid: int, *, timeout_s: float) -> None:
        _signal(pid, signal.SIGTERM)
        if _wait_dead(pid, timeout_s):
            return
        logger.warning("influxd (pid %d) ignored SIGTERM for %.0f s; killing it", pid, timeout_s)
        _signal(pid, signal.SIGKILL)
        if not _wait_dead(pid, 5.0):
            raise InfluxdError(f"influxd (pid {pid}) did not die even after SIGKILL")

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    def _is_our_influxd(self, pid: int) -> bool:
        """Alive, and an influxd run with our config (a pid file can outlive its process and
        the pid be reused by something else, which we must never signal)."""
        if not _is_alive(pid):
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            return not Path("/proc/self").exists()  # no procfs: trust the pid file
        except OSError:
            return False
        return (
            bool(argv)
            and os.path.basename(argv[0]) == b"influxd"
            and os.fsencode(self.config_path) in argv
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty log)"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, below the kernel's ephemeral range when it can be.

    The kernel hands ports of its ephemeral range to outgoing connections as well, so a port it
    picked for us can be taken as a source port before influxd binds it; ports below the range
    are never handed out that way.
    """
    low = _ephemeral_low()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if low > 10_000:
        for _ in range(50):
            port = random.randrange(10_000, low)
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        picked: int = probe.getsockname()[1]
        return picked


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # unknown: let the kernel pick


def _pings(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(f"{url}/ping").status_code == 204
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
    # A zombie has exited; only its parent's wait is missing.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


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
        raise InfluxdError(f"not allowed to signal influxd (pid {pid}): {exc}") from exc
