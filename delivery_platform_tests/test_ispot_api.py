"""The iSpot upload client against the local API double: every documented status, tokens, retries."""

from __future__ import annotations

import pytest

from delivery_platform.destinations.base import AlreadyExists
from delivery_platform.vendors.ispot.uploader import ISpotApiError, ISpotClient, ISpotRejected
from delivery_platform_tests.ispot_api_double import ISpotApiServer

HEADER = b"ip,datetime,siteid,app,type,customdata,useragent\n"


@pytest.fixture
def api():
    with ISpotApiServer() as server:
        yield server


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "conversions_20261119_001.csv"
    path.write_bytes(HEADER + b'"1.2.3.4","2026-11-19 10:00:00","TC-1234-1","web","purchase","","UA"\n')
    return path


def client(api, tmp_path, secret=None, **kw):
    sleeps = []
    c = ISpotClient(api.url, api.state.client_id, secret or api.state.client_secret,
                    token_cache=tmp_path / "token.json", timeout_s=2, backoff_s=0.01, sleep=sleeps.append, **kw)
    c.sleeps = sleeps
    return c


def test_201_upload_with_the_documented_field_and_a_cached_token(api, tmp_path, csv):
    first = client(api, tmp_path)
    first.upload(csv, csv.name)
    received = api.state.received[csv.name]
    assert received.body == csv.read_bytes()
    second = client(api, tmp_path)  # another run: reads the token file
    other = tmp_path / "conversions_20261119_002.csv"
    other.write_bytes(csv.read_bytes())
    second.upload(other, other.name)
    assert api.state.token_requests == 1
    assert (tmp_path / "token.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.fault("ispot-api", "file name iSpot already has (409)", "AlreadyExists; nothing uploaded twice")
def test_409_for_a_name_iSpot_already_has(api, tmp_path, csv):
    c = client(api, tmp_path)
    c.upload(csv, csv.name)
    with pytest.raises(AlreadyExists, match="409: The file already exists"):
        c.upload(csv, csv.name)


@pytest.mark.parametrize("body,name,message", [
    (b"LATEST_IPADDRESS,SITE_ID,TIME_STAMP\n", "conversions_1.csv", "validate the headers"),
    (HEADER, "conversions_1.txt", "not in the required CSV file format"),
])
def test_400_is_a_permanent_rejection_naming_the_file(api, tmp_path, body, name, message):
    path = tmp_path / name
    path.write_bytes(body)
    c = client(api, tmp_path)
    with pytest.raises(ISpotRejected, match=message) as err:
        c.upload(path, name)
    assert name in str(err.value) and c.sleeps == []  # never retried


@pytest.mark.fault("ispot-api", "file under the 8 MB minimum (400 too small)", "permanent failure naming the file; no retry")
def test_400_too_small(api, tmp_path, csv):
    api.state.min_bytes = 8_000_000
    with pytest.raises(ISpotRejected, match="too small"):
        client(api, tmp_path).upload(csv, csv.name)


@pytest.mark.fault("ispot-api", "token revoked before upload (401)", "one fresh token, then the upload succeeds")
def test_401_gets_one_fresh_token(api, tmp_path, csv):
    c = client(api, tmp_path)
    c.token()
    api.state.revoke_tokens()
    c.upload(csv, csv.name)
    assert api.state.token_requests == 2 and csv.name in api.state.received


@pytest.mark.fault("ispot-api", "wrong client secret (401 on token)", "clear error, secret not in the message")
def test_wrong_credentials_fail_clearly_without_the_secret(api, tmp_path, csv):
    secret = "WRONGsecretWRONGsecretWRONGsecretWRONGse"
    with pytest.raises(ISpotApiError, match="token request refused \\(401\\)") as err:
        client(api, tmp_path, secret=secret).upload(csv, csv.name)
    assert secret not in str(err.value) and secret not in repr(err.value)


@pytest.mark.parametrize("fault", [("status", 500, None), ("status", 503, 7), ("status", 429, 3), ("drop",)])
def test_server_errors_throttling_and_drops_are_retried_with_backoff(api, tmp_path, csv, fault, request):
    case = {500: "HTTP 500 twice", 503: "HTTP 503 + Retry-After twice", 429: "throttled (429 + Retry-After) twice"}.get(
        fault[1] if len(fault) > 1 else None, "connection dropped mid-upload twice")
    request.node.add_marker(pytest.mark.fault("ispot-api", case, "retried with backoff (Retry-After honoured); "
                                                                 "the upload lands once"))
    c = client(api, tmp_path)
    c.token()
    api.state.fail_next(fault, fault)
    c.upload(csv, csv.name)
    assert csv.name in api.state.received and len(c.sleeps) == 2
    if len(fault) > 2 and fault[2]:
        assert c.sleeps == [fault[2], fault[2]]  # Retry-After honoured


@pytest.mark.fault("ispot-api", "HTTP 500 on every attempt", "bounded retries, then a clear failure; nothing recorded as sent")
def test_retries_are_bounded(api, tmp_path, csv):
    c = client(api, tmp_path, max_attempts=3)
    c.token()
    api.state.fail_next(*[("status", 500, None)] * 5)
    with pytest.raises(ISpotApiError, match="failed after 3 attempts: HTTP 500"):
        c.upload(csv, csv.name)
    assert csv.name not in api.state.received and c.sleeps == [0.01, 0.02]


@pytest.mark.fault("ispot-api", "server slower than the client timeout", "timeout is retried; the upload lands once")
def test_a_slow_server_times_out_and_is_retried(api, tmp_path, csv):
    c = client(api, tmp_path)
    c.timeout_s = 0.5
    c.token()
    api.state.fail_next(("slow", 1.5))
    c.upload(csv, csv.name)
    assert list(api.state.received) == [csv.name] and len(c.sleeps) == 1


def test_the_uploader_publishes_write_only_and_the_ledger_accepts_only_its_own_409(api, tmp_path, csv):
    """iSpot's API is a write-only Publisher, not a Destination: `deliver_files` never asks it to read
    back; a 409 for bytes an earlier attempt of ours sent is recorded as delivered, any other refused."""
    import hashlib

    from delivery_platform.delivery import OutgoingFile, deliver_files
    from delivery_platform.destinations import Destination
    from delivery_platform.ledger import Ledger
    from delivery_platform.vendors.ispot.uploader import ISpotUploader

    uploader = ISpotUploader(client(api, tmp_path))
    assert not isinstance(uploader, Destination) and uploader.can_read_back is False
    ledger = Ledger(tmp_path / "ledger.sqlite")
    outgoing = [OutgoingFile(csv, csv.name)]
    sent = deliver_files(vendor="ispot", deliverable="conversions", partition_key="2026-11-19", files=outgoing,
                         destination=uploader, ledger=ledger, run_id="run-1", append=True)
    assert [f["md5"] for f in sent.files] == [hashlib.md5(csv.read_bytes()).hexdigest()]
    assert sent.destination == "ispot-api" and api.state.received[csv.name].body == csv.read_bytes()
    assert sent.files[0]["uri"] == f"{api.url}/v4/metrics/conversions#{csv.name}"
    # a name iSpot holds that no attempt of ours sent: refused, never recorded as delivered
    other = tmp_path / "conversions_20261119_002.csv"
    other.write_bytes(csv.read_bytes() + b'"5.6.7.8","2026-11-19 11:00:00","TC-1234-1","web","purchase","","UA"\n')
    api.state.received[other.name] = api.state.received[csv.name]
    with pytest.raises(AlreadyExists, match="409"):
        deliver_files(vendor="ispot", deliverable="conversions", partition_key="2026-11-19",
                      files=[OutgoingFile(other, other.name)], destination=uploader, ledger=ledger, run_id="run-2",
                      append=True)
