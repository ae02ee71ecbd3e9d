"""How runs are started: `launcher.WarmRunLauncher`, named by the instance's dagster.yaml."""
