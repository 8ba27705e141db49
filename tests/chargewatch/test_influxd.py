"""The local development InfluxDB: start, stop, reuse, and clear errors when it cannot run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargewatch.errors import InfluxdError
from chargewatch.influx import InfluxClient, LocalInfluxd, find_or_install_influxd

from ..conftest import free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalInfluxd]:
    """A LocalInfluxd that is not started yet, and surely stopped after the test."""
    local = LocalInfluxd(data_dir=tmp_path / "influxd", port=free_port())
    try:
        yield local
    finally:
        local.stop()


def _exited(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it (which may take a moment in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def test_start_serves_the_v1_api_and_stop_ends_it(server: LocalInfluxd) -> None:
    server.start()

    assert server.is_running()
    pid = server.pid
    assert pid is not None
    assert server.pid_path.read_text().strip() == str(pid)
    with InfluxClient(url=server.url, database="d") as client:
        assert client.ping().startswith("1.")
    config = server.config_path.read_text()
    assert f'bind-address = "127.0.0.1:{server.port}"' in config
    assert 'bind-address = "127.0.0.1:8088"' not in config  # no clash between instances
    assert str(server.data_dir / "wal") in config
    # Detached: its own session, and not a child of ours to reap.
    assert os.getsid(pid) != os.getsid(0)
    assert _parent_pid(pid) != os.getpid()

    server.stop()

    assert not server.is_running()
    assert server.pid is None
    assert not server.pid_path.exists()
    assert _exited(pid)
    server.stop()  # stopping what is stopped does nothing


def test_start_reuses_the_running_server_of_its_folder(server: LocalInfluxd) -> None:
    server.start()
    first_pid = server.pid

    server.start()  # the same object again
    LocalInfluxd(data_dir=server.data_dir, port=server.port).start()  # another object

    assert server.pid == first_pid


def test_the_server_outlives_the_process_that_started_it(server: LocalInfluxd) -> None:
    code = (
        "import sys; from pathlib import Path; from chargewatch.influx import LocalInfluxd; "
        "LocalInfluxd(data_dir=Path(sys.argv[1]), port=int(sys.argv[2])).start()"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(server.data_dir), str(server.port)], check=True, timeout=60
    )

    assert server.is_running()


def test_reuse_with_other_settings_is_refused(server: LocalInfluxd) -> None:
    server.start()
    with pytest.raises(InfluxdError, match="other settings"):
        LocalInfluxd(data_dir=server.data_dir, port=server.port, auth_enabled=True).start()


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        # the squatter takes a port the system hands out, then the server is given it: a port
        # found free first could be taken by another process before the squatter binds it
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = LocalInfluxd(data_dir=tmp_path / "influxd", port=port)
        try:
            with pytest.raises(InfluxdError, match=f"port {port} on 127.0.0.1 is already in use"):
                server.start()
        finally:
            server.stop()
    assert not server.pid_path.exists()


def test_a_server_that_dies_at_start_is_reported_with_its_log(server: LocalInfluxd) -> None:
    server.data_dir.mkdir(parents=True)
    (server.data_dir / "meta").write_text("a file where influxd needs a folder")

    with pytest.raises(InfluxdError, match=r"exited while starting(.|\n)*meta"):
        server.start()
    assert server.pid is None


def test_a_stale_pid_file_is_never_signalled(server: LocalInfluxd) -> None:
    server.data_dir.mkdir(parents=True)
    server.pid_path.write_text(f"{os.getpid()}\n")  # a live process that is not influxd

    assert not server.is_running()
    server.start()

    assert server.pid != os.getpid()
    assert server.is_running()


def test_influxd_is_found_on_path() -> None:
    assert find_or_install_influxd().name == "influxd"


def test_without_influxd_or_apt_get_the_error_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfluxdError, match="apt-get install influxdb"):
        find_or_install_influxd()
