import os

# Delivery retries keep their bound but not their 30 s backoff inside the test suite (read when
# the definitions load, before any vendor module is imported).
os.environ.setdefault("DELIVERY_RETRY_DELAY_SECONDS", "0")

# Every date rule reads delivery_platform.core.clock; the suite pins it to the morning after the
# fixed test calendar's last day (fixtures.END_DATE), so no test depends on today's date. It is an
# environment variable so that runs in other processes (dagster CLI, daemon, webserver) see it too.
# Tests that walk a calendar re-pin it with clock.pinned(...).
os.environ["DELIVERY_NOW"] = "2026-11-21T09:00:00+00:00"

pytest_plugins = ["delivery_platform_tests.fixtures", "delivery_platform_tests.servers",
                  "delivery_platform_tests.fault_report"]
