"""The application: ``python -m hpcfit fit CONFIG.toml`` (configuration, the run, templates)."""
