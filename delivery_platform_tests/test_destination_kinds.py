"""One configuration class per kind of store (destinations/config.py), discriminated by `kind`.

Each kind's configuration on its own, built in Python (no environment variables), publishes to its
real server; a field of another kind is a clear error naming the field and the kind, from Python,
from run config (the Launchpad) and from the environment; the definitions load with every kind."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import dagster as dg
import pytest

from delivery_platform.definitions import build_defs
from delivery_platform.destinations import (KINDS, AzureBlobDestinationConfig, ConfigurationFailure,
                                            Destination, DestinationConfigError, DestinationResource,
                                            GCSDestinationConfig, LocalDestinationConfig, S3DestinationConfig,
                                            SFTPDestinationConfig, destination_from_env, validate_kind)
from delivery_platform.destinations.config import BY_KIND
from delivery_platform_tests.servers import AZURITE_KEY, FAKE_AWS_KEY, FAKE_AWS_SECRET

SECRET = "SUPERSECRET-canary-kinds-51d0"
PACKAGE = Path(__file__).resolve().parents[1] / "delivery_platform"


def _config(kind: str, request, tmp_path, monkeypatch):
    """A fresh place on the kind's real server, configured in Python: secrets as EnvVars."""
    if kind == "local":
        return LocalDestinationConfig(root=str(tmp_path / "outbox"), prefix="in")
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = server.env("acme")["DELIVERY_ACME_S3_BUCKET"]  # creates the bucket
        monkeypatch.setenv("KINDS_AWS_KEY", FAKE_AWS_KEY)
        monkeypatch.setenv("KINDS_AWS_SECRET", FAKE_AWS_SECRET)
        return S3DestinationConfig(bucket=bucket, endpoint_url=server.endpoint, region="us-east-1", prefix="in",
                                   aws_access_key_id=dg.EnvVar("KINDS_AWS_KEY"),
                                   aws_secret_access_key=dg.EnvVar("KINDS_AWS_SECRET"), timeout=10, retries=1)
    if kind == "gcs":
        server = request.getfixturevalue("gcs_server")
        bucket = server.env("acme")["DELIVERY_ACME_GCS_BUCKET"]
        return GCSDestinationConfig(bucket=bucket, project=server.project, prefix="in", timeout=10, retries=1)
    if kind == "azure":
        server = request.getfixturevalue("azurite_server")
        container = server.env("acme")["DELIVERY_ACME_AZURE_CONTAINER"]
        monkeypatch.setenv("KINDS_AZURE_KEY", AZURITE_KEY)
        return AzureBlobDestinationConfig(account_url=server.account_url, container=container, prefix="in",
                                          account_key=dg.EnvVar("KINDS_AZURE_KEY"), timeout=10, retries=1)
    server = request.getfixturevalue("sftp_server")
    env = server.env("acme")
    monkeypatch.setenv("KINDS_SFTP_PASSWORD", server.password)
    return SFTPDestinationConfig(host="127.0.0.1", port=server.port, username=server.username,
                                 password=dg.EnvVar("KINDS_SFTP_PASSWORD"), host_key=server.host_key,
                                 prefix=env["DELIVERY_ACME_PREFIX"], timeout=10, retries=1)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_configured_alone_publishes_in_a_run(kind, request, tmp_path, monkeypatch):
    store = _config(kind, request, tmp_path, monkeypatch)
    assert store.kind == kind and type(store) is BY_KIND[kind]
    resource = DestinationResource(vendor="acme", store=store)
    assert resource.kind == kind
    src = tmp_path / "data.csv"
    src.write_bytes(b"a,b\n" + b'"1","2"\n' * 500)
    seen = {}

    @dg.asset
    def publish_one(acme_destination: DestinationResource) -> None:
        # the nested configuration arrives as its own class, EnvVars read when the run started
        assert type(acme_destination.store) is BY_KIND[kind]
        with acme_destination.get() as dest:
            published = dest.publish(src, "20261119/data.csv")
            seen["kind"], seen["names"] = dest.kind, [f.name for f in dest.list()]
            seen["uri"], seen["md5"] = published.uri, published.md5

    result = dg.materialize([publish_one], resources={"acme_destination": resource})
    assert result.success
    assert seen["kind"] == kind and seen["names"] == ["20261119/data.csv"]
    assert seen["md5"] == hashlib.md5(src.read_bytes()).hexdigest()
    assert "/in/" in seen["uri"] or kind == "sftp"  # the prefix is applied (SFTP's is the server folder)
    text = resource.describe() + repr(resource) + repr(resource.process_config_and_initialize())
    assert text.startswith(kind) and AZURITE_KEY not in text and FAKE_AWS_SECRET not in text
    if kind == "sftp":
        assert request.getfixturevalue("sftp_server").password not in text


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_names_its_own_missing_settings(kind):
    required = {"local": [], "s3": ["DELIVERY_ACME_S3_BUCKET"], "gcs": ["DELIVERY_ACME_GCS_BUCKET"],
                "azure": ["DELIVERY_ACME_AZURE_ACCOUNT_URL", "DELIVERY_ACME_AZURE_CONTAINER"],
                "sftp": ["DELIVERY_ACME_SFTP_HOST", "DELIVERY_ACME_SFTP_USERNAME"]}[kind]
    resource = DestinationResource(vendor="acme", store=BY_KIND[kind]())
    if not required:
        resource.validate()
        return
    with pytest.raises(DestinationConfigError) as err:
        resource.validate()
    assert all(name in str(err.value) for name in required), str(err.value)
    assert f"kind {kind!r}" in str(err.value)


def test_a_field_of_another_kind_is_refused_in_python_naming_field_and_kind():
    with pytest.raises(DestinationConfigError) as err:
        S3DestinationConfig(bucket="b", host="sftp.example.com", password=SECRET)
    text = str(err.value)
    assert "'host'" in text and "'password'" in text and "'s3'" in text and "bucket" in text, text
    assert SECRET not in text and SECRET not in repr(err.value)
    with pytest.raises(DestinationConfigError, match="'local'.*'timeout'"):
        LocalDestinationConfig(timeout=5)  # a local folder has no network timeout


def test_a_wrong_type_never_quotes_the_value():
    with pytest.raises(Exception) as err:
        SFTPDestinationConfig(host="h", username="u", port=SECRET)
    assert "port" in str(err.value) and SECRET not in str(err.value)


def test_a_field_of_another_kind_is_refused_in_run_config():
    """What the Launchpad sends: `store` is a selector keyed by kind, each branch its own fields."""

    @dg.asset
    def uses(acme_destination: DestinationResource) -> None:
        pass

    with pytest.raises(dg.DagsterInvalidConfigError) as err:
        dg.materialize([uses], resources={"acme_destination": DestinationResource.configure_at_launch()},
                       run_config={"resources": {"acme_destination": {"config": {
                           "vendor": "acme", "store": {"s3": {"bucket": "b", "host": "h"}}}}}})
    assert 'unexpected config entry "host"' in str(err.value) and "store:s3" in str(err.value)
    ok = dg.materialize([uses], resources={"acme_destination": DestinationResource.configure_at_launch()},
                        run_config={"resources": {"acme_destination": {"config": {
                            "vendor": "acme", "store": {"gcs": {"bucket": "b", "project": "p"}}}}}})
    assert ok.success


def test_the_launchpad_schema_is_a_selector_of_the_kinds_with_only_their_fields():
    schema = DestinationResource(vendor="acme").get_resource_definition().config_schema.config_type
    store = schema.fields["store"].config_type
    assert type(store).__name__ == "Selector" and set(store.fields) == set(KINDS)
    for kind, cls in BY_KIND.items():
        assert set(store.fields[kind].config_type.fields) == set(cls.model_fields) - {"kind"}, kind
    assert "host" not in store.fields["s3"].config_type.fields and "bucket" not in store.fields["sftp"].config_type.fields


def test_a_variable_of_another_kind_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv("DELIVERY_ACME_DESTINATION", "s3")
    monkeypatch.setenv("DELIVERY_ACME_S3_BUCKET", "b")
    monkeypatch.setenv("DELIVERY_ACME_SFTP_HOST", "sftp.example.com")
    monkeypatch.setenv("DELIVERY_ACME_SFTP_PASSWORD", SECRET)
    with pytest.raises(DestinationConfigError) as err:
        destination_from_env("acme")
    text = str(err.value)
    assert "DELIVERY_ACME_SFTP_HOST" in text and "DELIVERY_ACME_SFTP_PASSWORD" in text and "'s3'" in text
    assert "sftp" in text and SECRET not in text
    monkeypatch.setenv("DELIVERY_ACME_DESTINATION", "local")
    monkeypatch.delenv("DELIVERY_ACME_SFTP_HOST")
    monkeypatch.delenv("DELIVERY_ACME_SFTP_PASSWORD")
    monkeypatch.setenv("DELIVERY_ACME_TIMEOUT", "5")
    with pytest.raises(DestinationConfigError, match="DELIVERY_ACME_S3_BUCKET, DELIVERY_ACME_TIMEOUT are not"):
        destination_from_env("acme")


def test_secrets_from_the_environment_stay_envvars(monkeypatch):
    monkeypatch.setenv("DELIVERY_ACME_DESTINATION", "azure")
    monkeypatch.setenv("DELIVERY_ACME_AZURE_ACCOUNT_URL", "http://127.0.0.1:1/acct")
    monkeypatch.setenv("DELIVERY_ACME_AZURE_CONTAINER", "c")
    monkeypatch.setenv("DELIVERY_ACME_AZURE_SAS_TOKEN", SECRET)
    resource = destination_from_env("acme")
    assert isinstance(resource.store, AzureBlobDestinationConfig)
    assert isinstance(resource.store.sas_token, dg.EnvVar)
    shown = resource.get_resource_definition().config_schema.as_field().default_value
    assert shown["store"]["azure"]["sas_token"] == {"env": "DELIVERY_ACME_AZURE_SAS_TOKEN"}
    assert SECRET not in repr(shown) and SECRET not in repr(resource.process_config_and_initialize())


def test_the_sftp_host_key_policy_follows_the_environment(monkeypatch):
    monkeypatch.setenv("DELIVERY_ACME_DESTINATION", "sftp")
    assert destination_from_env("acme", env="production").store.host_key_policy == "strict"
    assert destination_from_env("acme", env="local").store.host_key_policy == "accept-new"


def test_allowed_kinds_from_the_vendor_registry():
    assert validate_kind("s3", ("s3", "gcs", "sftp"), "lotame") == "s3"
    with pytest.raises(DestinationConfigError, match="DELIVERY_LOTAME_DESTINATION='azure'.*allowed: s3, gcs, sftp"):
        validate_kind("azure", ("s3", "gcs", "sftp"), "lotame")
    with pytest.raises(DestinationConfigError, match="unknown destination kind 'ftp'"):
        validate_kind("ftp")
    with pytest.raises(DestinationConfigError, match=r"\['s4'\] are not kinds"):
        validate_kind("s3", ("s4",))


def test_a_kind_the_vendor_does_not_allow_fails_the_run_at_once_without_retries(monkeypatch, tmp_path):
    monkeypatch.setenv("DELIVERY_ACME_LOCAL_ROOT", str(tmp_path))
    resource = destination_from_env("acme", allowed=["sftp"])  # loads: only acme's runs fail
    calls = []

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))
    def deliver(acme_destination: DestinationResource) -> None:
        calls.append(1)

    result = dg.materialize([deliver], resources={"acme_destination": resource}, raise_on_error=False)
    assert not result.success and calls == []
    types = [e.event_type_value for e in result.all_events]
    # the resource fails to initialise: the run fails before the step, so its RetryPolicy never applies
    assert "RESOURCE_INIT_FAILURE" in types and "STEP_UP_FOR_RETRY" not in types and "STEP_START" not in types
    text = "\n".join(repr(e.event_specific_data) for e in result.all_events)
    assert "ConfigurationFailure" in text and "DELIVERY_ACME_DESTINATION='local'" in text and "allowed: sftp" in text
    assert issubclass(ConfigurationFailure, DestinationConfigError)


FAKE = {
    "s3": {"S3_BUCKET": "b", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": SECRET},
    "gcs": {"GCS_BUCKET": "b", "GCS_PROJECT": "p"},
    "azure": {"AZURE_ACCOUNT_URL": "https://a.blob.core.windows.net", "AZURE_CONTAINER": "c",
              "AZURE_ACCOUNT_KEY": SECRET},
    "sftp": {"SFTP_HOST": "sftp.example.com", "SFTP_USERNAME": "u", "SFTP_PASSWORD": SECRET,
             "SFTP_HOST_KEY": "ssh-ed25519 AAAA"},
    "local": {},
}


@pytest.mark.parametrize("kind", KINDS)
def test_the_definitions_load_with_every_kind(kind, monkeypatch, data_dir):
    vendors = [key[: -len("_destination")] for key, value in build_defs("production").resources.items()
               if key.endswith("_destination") and isinstance(value, DestinationResource)]
    assert vendors
    for vendor in vendors:
        monkeypatch.setenv(f"DELIVERY_{vendor.upper()}_DESTINATION", kind)
        for setting, value in FAKE[kind].items():
            monkeypatch.setenv(f"DELIVERY_{vendor.upper()}_{setting}", value)
    for env in ("local", "production"):
        defs = build_defs(env)
        dg.Definitions.validate_loadable(defs)
        for vendor in vendors:
            resource = defs.resources[f"{vendor}_destination"]
            assert resource.kind == kind and type(resource.store) is BY_KIND[kind]
            assert SECRET not in resource.describe() + repr(resource)


def _imports(path: Path) -> set[str]:
    """Modules of delivery_platform a file imports, at the top or inside functions."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            else:
                names = [node.module or ""]
            found |= {n for n in names if n.startswith("delivery_platform")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("delivery_platform")}
    return found


def test_destinations_import_nothing_above_them_and_no_cycle():
    allowed = ("delivery_platform.destinations", "delivery_platform.core", "delivery_platform.settings")
    graph = {}
    for path in sorted((PACKAGE / "destinations").glob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        imported = _imports(path)
        assert all(i.startswith(allowed) for i in imported), (name, imported)
        graph[name] = {i for i in imported if i.startswith("delivery_platform.destinations.")}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph.get(start, ()))

    cycles = [m for m in graph if m != "delivery_platform.destinations.__init__" and reaches(m, m)]
    assert cycles == []


def test_the_ispot_api_is_not_a_destination():
    from delivery_platform.destinations import Publisher
    from delivery_platform.vendors.ispot.uploader import ISpotUploader

    assert issubclass(ISpotUploader, Publisher) and not issubclass(ISpotUploader, Destination)
    assert ISpotUploader.can_read_back is False
    assert not hasattr(ISpotUploader, "list") and not hasattr(ISpotUploader, "verify")


def test_every_vendor_allows_only_known_kinds():
    """The registry's `destination_kinds` pass `validate_kind` (a typo there would be caught here)."""
    from delivery_platform.vendors import VENDORS

    for vendor in VENDORS:
        assert vendor.destination_kinds, vendor.name
        for kind in vendor.destination_kinds:
            assert validate_kind(kind, vendor.destination_kinds, vendor.name) == kind


def test_each_vendor_destination_carries_its_allowed_kinds(monkeypatch, data_dir):
    """resources_for passes the registry's kinds: a kind the document does not allow loads, and its runs
    fail at once naming the variable and the allowed kinds."""
    from delivery_platform.vendors import VENDORS

    narrow = next(v for v in VENDORS if "s3" not in v.destination_kinds)
    monkeypatch.setenv(f"DELIVERY_{narrow.name.upper()}_DESTINATION", "s3")
    monkeypatch.setenv(f"DELIVERY_{narrow.name.upper()}_S3_BUCKET", "b")
    defs = build_defs("local")
    for vendor in VENDORS:
        assert defs.resources[vendor.destination_key].allowed_kinds == list(vendor.destination_kinds)
    with pytest.raises(DestinationConfigError) as err:
        defs.resources[narrow.destination_key].validate()
    assert f"DELIVERY_{narrow.name.upper()}_DESTINATION='s3'" in str(err.value)
    assert ", ".join(narrow.destination_kinds) in str(err.value)
