"""The state store: the same put/get/list/exists/delete on local folders and on S3, GCS and
Azure Blob (real emulators on 127.0.0.1), selected by DELIVERY_STATE_URL."""

from __future__ import annotations

import hashlib

import pytest

from delivery_platform import state_store as st


def _point_state_at(request, monkeypatch, backend: str) -> None:
    if backend == "local":
        monkeypatch.delenv(st.ENV, raising=False)
        return
    server = request.getfixturevalue(backend)
    env = server.env("state")
    place = env.get("DELIVERY_STATE_S3_BUCKET") or env.get("DELIVERY_STATE_GCS_BUCKET") \
        or env.get("DELIVERY_STATE_AZURE_CONTAINER")
    scheme = {"s3_server": "s3", "gcs_server": "gs", "azurite_server": "az"}[backend]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(st.ENV, f"{scheme}://{place}/platform/state")


@pytest.mark.parametrize("backend", ["local", "s3_server", "gcs_server", "azurite_server"])
def test_put_get_list_exists_delete(data_dir, monkeypatch, request, backend, tmp_path):
    _point_state_at(request, monkeypatch, backend)
    store = st.state_store()
    assert store.kind == {"local": "local", "s3_server": "s3", "gcs_server": "gcs", "azurite_server": "azure"}[backend]
    source = tmp_path / "held.parquet"
    source.write_bytes(b"first version")
    store.put("state/lotame/2026-11-15/abc.held.parquet", source)
    store.put_bytes("state/lotame/2026-11-15/abc.json", '{"mode": "delta"}')
    store.put_bytes("state/digital_audience/2026-11-15.parquet", b"contacts")
    assert store.exists("state/lotame/2026-11-15/abc.json")
    assert not store.exists("state/lotame/2026-11-16/abc.json")
    assert store.list("state/lotame/") == ["state/lotame/2026-11-15/abc.held.parquet",
                                          "state/lotame/2026-11-15/abc.json"]
    assert store.list("state/lotame/2026-11-15/abc.j") == ["state/lotame/2026-11-15/abc.json"]
    assert store.get("state/lotame/2026-11-15/abc.held.parquet").read_bytes() == b"first version"
    assert store.md5("state/digital_audience/2026-11-15.parquet") == hashlib.md5(b"contacts").hexdigest()
    # a replaced object is read again, never served stale from the cache
    store.put_bytes("state/lotame/2026-11-15/abc.json", '{"mode": "comprehensive"}')
    assert store.read_bytes("state/lotame/2026-11-15/abc.json") == b'{"mode": "comprehensive"}'
    store.delete("state/lotame/2026-11-15/abc.json")
    assert not store.exists("state/lotame/2026-11-15/abc.json")
    with pytest.raises(FileNotFoundError):
        store.get("state/lotame/2026-11-15/abc.json")
    if backend != "local":
        # nothing of it was written to the worker's data folder except the cache
        assert not (data_dir / "state").exists()


def test_unknown_scheme_names_the_variable(monkeypatch):
    monkeypatch.setenv(st.ENV, "ftp://somewhere/prefix")
    with pytest.raises(st.StateConfigError, match="DELIVERY_STATE_URL"):
        st.state_store()


def test_keys_cannot_escape(data_dir):
    with pytest.raises(ValueError):
        st.state_store().put_bytes("state/../../etc/passwd", b"x")
