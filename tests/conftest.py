"""Shared fixtures live in tests/plugins/ (one module per real service)."""

pytest_plugins = ["tests.plugins.postgres", "tests.plugins.sqs"]
