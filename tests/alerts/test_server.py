"""The local Alertmanager: started on loopback from a folder, reused, refused when its port is
taken or its configuration is bad, stopped by pid."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from alerts.server import MINIMAL_CONFIG, LocalAlertmanager, find_or_install_alertmanager
from chargewatch.errors import ConfigError, LocalAlertmanagerError
from chargewatch.influx.server import free_port


def test_binaries_are_found() -> None:
    found = find_or_install_alertmanager()
    assert found.alertmanager.name in {"alertmanager", "prometheus-alertmanager"}
    assert found.amtool.name == "amtool"


def test_start_reuse_status_and_stop(tmp_path: Path) -> None:
    server = LocalAlertmanager(data_dir=tmp_path / "am", port=free_port())
    assert server.status().pid is None
    server.start()
    try:
        pid = server.pid
        assert pid is not None and server.is_running()
        assert server.config_path.read_text(encoding="utf-8") == MINIMAL_CONFIG
        assert server.config_path.stat().st_mode & 0o077 == 0
        again = LocalAlertmanager(data_dir=tmp_path / "am", port=server.port)
        again.start()  # the folder's Alertmanager is up: reused, not a second one
        assert again.pid == pid
        status = server.status()
        assert (status.pid, status.ready, status.url) == (pid, True, server.url)
        # Loopback only, and no cluster (gossip) listener.
        assert httpx.get(f"{server.url}/api/v2/status").json()["cluster"]["status"] == "disabled"
        with pytest.raises(LocalAlertmanagerError, match="listens elsewhere"):
            LocalAlertmanager(data_dir=tmp_path / "am", port=free_port()).start()
    finally:
        server.stop()
    assert server.pid is None and not server.pid_path.exists()
    assert (server.storage_dir / "nflog").exists()  # written on SIGTERM


def test_a_taken_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalAlertmanagerError, match=f"port {port} .* already in use"):
            LocalAlertmanager(data_dir=tmp_path / "am", port=port).start()


def test_a_bad_configuration_is_a_config_error(tmp_path: Path) -> None:
    server = LocalAlertmanager(
        data_dir=tmp_path / "am", port=free_port(), config="route:\n  receiver: nobody\n"
    )
    with pytest.raises(ConfigError, match="nobody"):
        server.start()
    assert server.pid is None


def test_reload_takes_a_new_configuration_and_refuses_a_bad_one(tmp_path: Path) -> None:
    server = LocalAlertmanager(data_dir=tmp_path / "am", port=free_port())
    server.start()
    try:
        server.reload(MINIMAL_CONFIG.replace("default", "renamed"))
        assert "renamed" in httpx.get(f"{server.url}/api/v2/status").json()["config"]["original"]
        with pytest.raises(ConfigError):
            server.reload("route:\n  receiver: nobody\n")
        assert server.is_running()  # it keeps the previous configuration
    finally:
        server.stop()


def test_without_the_binaries_nor_apt_get_the_error_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there: no alertmanager, no apt-get
    with pytest.raises(LocalAlertmanagerError, match="apt-get install prometheus-alertmanager"):
        find_or_install_alertmanager()
