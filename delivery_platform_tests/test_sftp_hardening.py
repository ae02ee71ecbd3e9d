"""SFTP as an independent server sees it (Debian's OpenSSH, not chrooted) and as operators get it
wrong: login-folder paths, host-key trust, configuration errors named early, outages that honour
RETRIES and TIMEOUT, and temporary files a killed upload left behind."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from delivery_platform.delivery import OutgoingFile, deliver_files
from delivery_platform.destinations import DestinationConfigError, destination_from_env
from delivery_platform.destinations.base import DestinationError
from delivery_platform.ledger import Ledger
from delivery_platform_tests.fault_proxy import TcpFaultProxy


def opened(monkeypatch, env: dict, vendor="acme", production=False, logger=None):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DELIVERY_ENV", "production" if production else "local")
    resource = destination_from_env(vendor).process_config_and_initialize()
    return resource.get(logger=logger) if logger else resource.get()


@pytest.fixture
def payload(tmp_path) -> Path:
    src = tmp_path / "f.csv"
    src.write_bytes(os.urandom(200_000))
    return src


@pytest.mark.fault("sftp", "OpenSSH, non-chrooted account: relative PREFIX",
                   "files land below the login folder, not at the server's /")
def test_relative_paths_land_in_the_login_folder(monkeypatch, openssh_server, payload, data_dir):
    folder = f"uploads-{uuid.uuid4().hex[:8]}"
    env = openssh_server.env("acme", folder=folder)
    with opened(monkeypatch, env) as dest:
        published = dest.publish(payload, "day/f.csv")
        assert [f.name for f in dest.list()] == ["day/f.csv"]
    assert (openssh_server.home / folder / "day" / "f.csv").read_bytes() == payload.read_bytes()
    assert not Path("/", folder).exists()
    assert published.uri.endswith(f":{openssh_server.port}/~/{folder}/day/f.csv")


def test_an_absolute_prefix_is_taken_from_the_servers_root(monkeypatch, openssh_server, payload, tmp_path):
    target = tmp_path / "absolute-drop"
    target.mkdir()
    with opened(monkeypatch, openssh_server.env("acme", folder=str(target))) as dest:
        dest.publish(payload, "f.csv")
    assert (target / "f.csv").read_bytes() == payload.read_bytes()


@pytest.mark.fault("sftp", "no host key pinned, production", "refused; the error names the variables and shows "
                   "the server's key to pin; nothing uploaded")
def test_production_refuses_an_unpinned_server_and_shows_its_key(monkeypatch, openssh_server, data_dir):
    env = openssh_server.env("acme", pin=False)
    with pytest.raises(DestinationError) as err:
        opened(monkeypatch, env, production=True)
    text = str(err.value)
    assert "DELIVERY_ACME_SFTP_HOST_KEY" in text and "DELIVERY_ACME_SFTP_KNOWN_HOSTS_FILE" in text
    assert openssh_server.host_key in text  # the key the server offered, ready to pin
    assert not any((openssh_server.home / env["DELIVERY_ACME_PREFIX"]).iterdir())


@pytest.mark.fault("sftp", "no host key pinned, local: the server's key changes",
                   "first key remembered in data/known_hosts (accept-new); a changed key is refused")
def test_local_accepts_a_new_key_once_and_refuses_a_changed_one(monkeypatch, openssh_server, sftp_server, data_dir):
    env = openssh_server.env("acme", pin=False)
    with opened(monkeypatch, env) as dest:
        dest.list()
    known = data_dir / "known_hosts"
    assert openssh_server.host_key.split()[1] in known.read_text()
    with opened(monkeypatch, env) as dest:  # the remembered key is accepted silently
        dest.list()
    # an impostor answering on the same host and port: the remembered line now holds another key
    line = known.read_text().split()
    known.write_text(f"{line[0]} {sftp_server.host_key}\n")
    with pytest.raises(DestinationError, match="does not match the pinned key"):
        opened(monkeypatch, env)


@pytest.mark.fault("sftp", "known_hosts file missing", "a configuration error naming the variable and the path")
def test_a_missing_known_hosts_file_names_its_variable(monkeypatch, openssh_server, tmp_path):
    env = openssh_server.env("acme", pin=False, DELIVERY_ACME_SFTP_KNOWN_HOSTS_FILE=str(tmp_path / "nope"))
    with pytest.raises(DestinationConfigError) as err:
        opened(monkeypatch, env)
    assert "DELIVERY_ACME_SFTP_KNOWN_HOSTS_FILE" in str(err.value) and str(tmp_path / "nope") in str(err.value)


@pytest.mark.fault("sftp", "private key file missing", "a configuration error naming the variable and the path, "
                   "not 'cannot reach host'")
def test_a_missing_private_key_names_its_variable(monkeypatch, openssh_server, tmp_path):
    env = openssh_server.env("acme", DELIVERY_ACME_SFTP_PRIVATE_KEY_FILE=str(tmp_path / "id_missing"))
    with pytest.raises(DestinationConfigError) as err:
        opened(monkeypatch, env)
    text = str(err.value)
    assert "DELIVERY_ACME_SFTP_PRIVATE_KEY_FILE" in text and "id_missing" in text and "reach" not in text


@pytest.mark.fault("sftp", "server down", "RETRIES=2 gives 2 reconnect attempts with backoff, each in the event log")
def test_a_server_that_is_down_is_tried_retries_times(monkeypatch, openssh_server, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        env = openssh_server.env("acme", DELIVERY_ACME_SFTP_PORT=str(port), DELIVERY_ACME_RETRIES="2",
                                 DELIVERY_ACME_TIMEOUT="2")
        logger = logging.getLogger("test.sftp.down")
        with caplog.at_level(logging.WARNING, logger="test.sftp.down"):
            with pytest.raises(DestinationError, match=r"cannot reach SFTP host .* \(tried 3 times\)"):
                opened(monkeypatch, env, logger=logger)
    assert len([r for r in caplog.records if "connecting again" in r.getMessage()]) == 2


@pytest.mark.fault("sftp", "server stalls mid-upload (TIMEOUT=2)", "the stall costs about one TIMEOUT before the "
                   "reconnect, not two; the reconnect is in the run's event log; one complete file")
def test_a_stall_is_bounded_by_the_timeout_and_logged_to_the_run(monkeypatch, openssh_server, tmp_path):
    proxy = TcpFaultProxy(openssh_server.port)
    try:
        env = openssh_server.env("acme", DELIVERY_ACME_SFTP_PORT=str(proxy.port), DELIVERY_ACME_TIMEOUT="2",
                                 DELIVERY_ACME_RETRIES="2")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        src = tmp_path / "big.bin"
        src.write_bytes(os.urandom(4 << 20))
        elapsed = []

        @dg.asset
        def publish_through_a_stall(context):
            with destination_from_env("acme").process_config_and_initialize().get(logger=context.log) as dest:
                proxy.stall(30)
                started = time.monotonic()
                dest.publish(src, "f.bin")
                elapsed.append(time.monotonic() - started)

        instance = dg.DagsterInstance.ephemeral()
        result = dg.materialize([publish_through_a_stall], instance=instance)
        assert result.success and proxy.fired
        # one TIMEOUT (2 s) to notice, 0.5 s backoff, a reconnect and a 4 MB upload on loopback: about 3 s
        # idle, and up to 5 s more for the SSH handshake beside the other test worker (one run: 5.7 s);
        # without the timeout it would wait out the 30 s stall
        assert elapsed[0] < 2 * 2 + 0.5 + 5, f"took {elapsed[0]:.1f} s"
        logged = [r.user_message for r in instance.all_logs(result.run_id)]
        assert any("SFTP connection lost" in m and "reconnecting" in m for m in logged), logged
        folder = openssh_server.home / env["DELIVERY_ACME_PREFIX"]
        assert sorted(p.name for p in folder.iterdir()) == ["f.bin"]
    finally:
        proxy.close()


@pytest.mark.parametrize("server", ["openssh_server", "sftp_server"])
def test_a_takeover_removes_the_temporary_file_a_killed_upload_left(monkeypatch, request, server, tmp_path,
                                                                    payload, data_dir):
    request.node.add_marker(pytest.mark.fault(
        "sftp", f"temporary file left by a killed run ({server.split('_')[0]})",
        "the run that takes over the dead claim removes it (its name is in the ledger)"))
    srv = request.getfixturevalue(server)
    env = srv.env("acme")
    folder = (srv.home if server == "openssh_server" else srv.root) / env["DELIVERY_ACME_PREFIX"]
    ledger = Ledger(tmp_path / "ledger.sqlite")
    # what a killed run leaves: a claim held by a process that is gone, an attempt in flight, and
    # its temporary file next to where the final file would be
    attempt = ledger.begin("acme", "d", "2026-11-18", "day/f.csv", run_id="dead-run")
    with ledger._write() as con:
        con.execute("INSERT INTO claims VALUES ('acme', 'd', '2026-11-18', 'dead-run', ?, '2999-01-01T00:00:00+00:00')",
                    (f"{socket.gethostname()}:999999999",))
    (folder / "day").mkdir(parents=True)
    (folder / "day" / f".f.csv.part-{attempt}").write_bytes(b"half an upload")
    with opened(monkeypatch, env) as dest:
        outcome = deliver_files(vendor="acme", deliverable="d", partition_key="2026-11-18", destination=dest,
                                files=[OutgoingFile(payload, "day/f.csv")], ledger=ledger, run_id="new-run")
    assert sorted(p.name for p in (folder / "day").iterdir()) == ["f.csv"]
    assert outcome.leftovers == []
    first = ledger.attempts("acme", "d", "2026-11-18")[0]
    assert first.status == "failed" and first.error.startswith("abandoned")


@pytest.mark.fault("sftp", "temporary file of a killed run cannot be removed", "the delivery goes on; an alert "
                   "names the file")
def test_a_leftover_that_cannot_be_removed_is_alerted(monkeypatch, openssh_server, payload, tmp_path, data_dir):
    from delivery_platform.alerts import AlertSinks, process_run
    from delivery_platform.alerts.sensors import AlertLog
    from delivery_platform_tests.http_doubles import Recorder

    env = openssh_server.env("acme")
    folder = openssh_server.home / env["DELIVERY_ACME_PREFIX"]
    ledger = Ledger()
    attempt = ledger.begin("acme", "d", "2026-11-18", "f.csv", run_id="dead-run")
    with ledger._write() as con:
        con.execute("INSERT INTO claims VALUES ('acme', 'd', '2026-11-18', 'dead-run', ?, '2999-01-01T00:00:00+00:00')",
                    (f"{socket.gethostname()}:999999999",))
    stuck = folder / f".f.csv.part-{attempt}"
    stuck.mkdir()  # a folder under that name cannot be removed with an SFTP remove
    (stuck / "x").write_bytes(b"x")
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition("2026-11-01"), key=["acme", "d_delivery"])
    def d_delivery(context):
        with destination_from_env("acme").process_config_and_initialize().get(logger=context.log) as dest:
            outcome = deliver_files(vendor="acme", deliverable="d", partition_key=context.partition_key,
                                    destination=dest, files=[OutgoingFile(payload, "f.csv")], ledger=Ledger(),
                                    run_id=context.run_id, logger=context.log)
        return dg.MaterializeResult(metadata=outcome.metadata())

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([d_delivery], partition_key="2026-11-18", instance=instance)
    assert result.success and (folder / "f.csv").exists()
    with Recorder() as hook:
        sent = process_run(instance, result.run_id, AlertSinks(webhook_url=hook.url), AlertLog())
    assert [a.kind for a in sent] == ["leftover_file"]
    assert f".f.csv.part-{attempt}" in sent[0].detail and "remove by hand" in sent[0].detail


@pytest.mark.fault("s3", "destination without a bucket, in a real run", "the run fails at once with one short line "
                   "naming the variable; no retries")
def test_a_misconfigured_destination_fails_the_run_at_once_without_retries(monkeypatch, data_dir):
    from delivery_platform.definitions import build_defs

    monkeypatch.setenv("DELIVERY_LOTAME_DESTINATION", "s3")
    monkeypatch.setenv("DELIVERY_RETRY_DELAY_SECONDS", "0")
    job = build_defs("local").resolve_job_def("lotame_daily_delivery")
    started = time.monotonic()
    result = job.execute_in_process(partition_key="2026-11-19", instance=dg.DagsterInstance.ephemeral(),
                                    raise_on_error=False)
    assert not result.success and time.monotonic() - started < 60
    events = result.all_events
    # the run's resources are set up before any step: nothing was staged, written or sent
    assert not [e for e in events if e.event_type_value in ("STEP_START", "STEP_RESTARTED")]
    failure = next(e for e in events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    error = failure.event_specific_data.error
    text = error.message + "".join(c.message for c in [error.cause] if c)
    assert "DELIVERY_LOTAME_S3_BUCKET" in text


@pytest.mark.fault("sftp", "the watched Idomoo Downloads folder does not exist (wrong case)",
                   "every sensor tick fails naming the folder; one alert")
def test_a_missing_watched_folder_is_an_error_on_every_tick_and_one_alert(monkeypatch, openssh_server, data_dir):
    from delivery_platform.alerts import AlertSinks
    from delivery_platform.definitions import build_defs
    from delivery_platform.vendors.idomoo.downloads import downloads_sensor
    from delivery_platform_tests.http_doubles import Recorder

    env = openssh_server.env("idomoo")
    (openssh_server.home / env["DELIVERY_IDOMOO_PREFIX"] / "downloads").mkdir()  # the real one is lower case
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IDOMOO_DOWNLOADS", "Downloads")
    resources = build_defs("local").resources
    destination = resources["idomoo_destination"].process_config_and_initialize()
    settings = resources["idomoo_settings"].process_config_and_initialize()
    with Recorder() as hook:
        sinks = AlertSinks(webhook_url=hook.url)
        for _ in range(3):
            with pytest.raises(DestinationError, match="Downloads does not exist"):
                downloads_sensor(dg.build_sensor_context(), destination, settings, sinks)
        assert len(hook.requests) == 1
