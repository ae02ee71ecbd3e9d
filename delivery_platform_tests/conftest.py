import os

# Delivery retries keep their bound but not their 30 s backoff inside the test suite (read when
# the definitions load, before any vendor module is imported).
os.environ.setdefault("DELIVERY_RETRY_DELAY_SECONDS", "0")

pytest_plugins = ["delivery_platform_tests.fixtures", "delivery_platform_tests.servers",
                  "delivery_platform_tests.fault_report"]
