pytest_plugins = ["delivery_platform_tests.fixtures"]
