"""Loading the code location (every run process, the webserver, the daemon's code server) does not
import the client SDKs of destinations, probes and alert sinks: those are imported where a step, probe
or sink talks to the service (README, "Run start-up")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CLIENTS = ["boto3", "botocore", "paramiko", "requests", "google.cloud.storage", "azure.storage.blob", "asyncssh",
           "dagster_aws", "dagster_gcp", "dagster_azure", "dagster_ssh"]


def test_loading_the_definitions_imports_no_client_sdk():
    # every destination kind configured, so each kind's resource is built at load
    env = {**os.environ, "DELIVERY_LOTAME_DESTINATION": "s3", "DELIVERY_ISPOT_DESTINATION": "sftp",
           "DELIVERY_OPTIMOVE_DESTINATION": "gcs", "DELIVERY_IDOMOO_DESTINATION": "azure"}
    code = ("import sys, json; from delivery_platform.definitions import defs; "
            f"print(json.dumps([m for m in {CLIENTS!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
