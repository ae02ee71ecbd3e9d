import os

# Delivery retries keep their bound but not their 30 s backoff inside the test suite (read when
# the definitions load, before any vendor module is imported).
os.environ.setdefault("DELIVERY_RETRY_DELAY_SECONDS", "0")

# Every date rule reads delivery_platform.core.clock; the suite pins it to the morning after the
# fixed test calendar's last day (fixtures.END_DATE), so no test depends on today's date. It is an
# environment variable so that runs in other processes (dagster CLI, daemon, webserver) see it too.
# Tests that walk a calendar re-pin it with clock.pinned(...).
os.environ["DELIVERY_NOW"] = "2026-11-21T09:00:00+00:00"

# The first partition is configuration (delivery_platform/partitions.py). The suite's calendars start
# as early as 2026-09-01 (Lotame, digitalAudience scenarios; Optimove's from 2026-09-28): the test
# warehouses are built after the definitions load, so the first day is set here, not read from them.
os.environ.setdefault("DELIVERY_FIRST_DAY", "2026-08-01")

pytest_plugins = ["delivery_platform_tests.fixtures", "delivery_platform_tests.servers",
                  "delivery_platform_tests.fault_report"]
