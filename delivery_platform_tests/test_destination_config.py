"""Bad destination configuration fails clearly: the vendor and the variable are named, secrets never shown."""

from __future__ import annotations

import socket

import pytest

from delivery_platform.destinations import DestinationConfigError, destination_from_env
from delivery_platform.destinations.base import DestinationError

SECRET = "SUPERSECRET-canary-7f3a9c"


def open_destination(monkeypatch, env: dict, vendor="lotame"):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return destination_from_env(vendor).process_config_and_initialize().get()


def assert_clear(err, *names):
    text = str(err.value)
    for name in names:
        assert name in text, text
    assert SECRET not in text and SECRET not in repr(err.value)


def test_unknown_kind(monkeypatch):
    with pytest.raises(DestinationConfigError) as err:
        open_destination(monkeypatch, {"DELIVERY_LOTAME_DESTINATION": "ftp"})
    assert_clear(err, "lotame", "DELIVERY_LOTAME_DESTINATION", "ftp")


def test_s3_without_a_bucket(monkeypatch):
    with pytest.raises(DestinationConfigError) as err:
        open_destination(monkeypatch, {"DELIVERY_LOTAME_DESTINATION": "s3",
                                       "DELIVERY_LOTAME_AWS_SECRET_ACCESS_KEY": SECRET})
    assert_clear(err, "lotame", "DELIVERY_LOTAME_S3_BUCKET")


def test_s3_with_half_the_credentials(monkeypatch):
    with pytest.raises(DestinationConfigError) as err:
        open_destination(monkeypatch, {"DELIVERY_LOTAME_DESTINATION": "s3", "DELIVERY_LOTAME_S3_BUCKET": "b",
                                       "DELIVERY_LOTAME_AWS_SECRET_ACCESS_KEY": SECRET})
    assert_clear(err, "lotame", "DELIVERY_LOTAME_AWS_ACCESS_KEY_ID")


def test_azure_without_a_credential(monkeypatch):
    with pytest.raises(DestinationConfigError) as err:
        open_destination(monkeypatch, {"DELIVERY_OPTIMOVE_DESTINATION": "azure",
                                       "DELIVERY_OPTIMOVE_AZURE_ACCOUNT_URL": "http://127.0.0.1:1/x",
                                       "DELIVERY_OPTIMOVE_AZURE_CONTAINER": "c"}, vendor="optimove")
    assert_clear(err, "optimove", "DELIVERY_OPTIMOVE_AZURE_SAS_TOKEN", "DELIVERY_OPTIMOVE_AZURE_ACCOUNT_KEY")


@pytest.mark.fault("sftp", "unreachable host", "clear error naming vendor and DELIVERY_<VENDOR>_SFTP_HOST; no secret")
def test_unreachable_sftp_host(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with pytest.raises(DestinationError) as err:
            open_destination(monkeypatch, {"DELIVERY_IDOMOO_DESTINATION": "sftp", "DELIVERY_IDOMOO_SFTP_HOST": "127.0.0.1",
                                           "DELIVERY_IDOMOO_SFTP_PORT": str(port), "DELIVERY_IDOMOO_SFTP_USERNAME": "u",
                                           "DELIVERY_IDOMOO_SFTP_PASSWORD": SECRET, "DELIVERY_IDOMOO_TIMEOUT": "3",
                                           "DELIVERY_IDOMOO_RETRIES": "1"},
                             vendor="idomoo")
    assert_clear(err, "idomoo", "DELIVERY_IDOMOO_SFTP_HOST", str(port))


@pytest.mark.fault("sftp", "server host key changed (pinned key differs)", "delivery refused with a clear error")
def test_a_changed_sftp_host_key_stops_the_delivery(monkeypatch, sftp_server):
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().split()
    env = sftp_server.env("idomoo", DELIVERY_IDOMOO_SFTP_HOST_KEY=f"{other[0]} {other[1]}",
                          DELIVERY_IDOMOO_SFTP_PASSWORD=SECRET)
    with pytest.raises(DestinationError) as err:
        open_destination(monkeypatch, env, vendor="idomoo")
    assert_clear(err, "idomoo", "does not match the pinned key", "DELIVERY_IDOMOO_SFTP_HOST_KEY")


def test_the_pinned_sftp_host_key_and_a_private_key_log_in(monkeypatch, sftp_server):
    env = sftp_server.env("idomoo")
    env.pop("DELIVERY_IDOMOO_SFTP_PASSWORD")
    env["DELIVERY_IDOMOO_SFTP_PRIVATE_KEY_FILE"] = str(sftp_server.client_key_file)
    with open_destination(monkeypatch, env, vendor="idomoo") as dest:
        assert dest.list() == []


@pytest.mark.fault("sftp", "wrong password", "clear error naming the variables, never the password")
def test_a_wrong_sftp_password(monkeypatch, sftp_server):
    env = sftp_server.env("idomoo", DELIVERY_IDOMOO_SFTP_PASSWORD=SECRET)
    with pytest.raises(DestinationError) as err:
        open_destination(monkeypatch, env, vendor="idomoo")
    assert_clear(err, "idomoo", "DELIVERY_IDOMOO_SFTP_PASSWORD", "refused")
