pytest_plugins = ["delivery_platform_tests.fixtures", "delivery_platform_tests.servers", "delivery_platform_tests.fault_report"]
