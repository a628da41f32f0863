"""Shared fixtures live in tests/plugins/ (one module per real service). ``network`` comes
first: it guards every connection and sets fake AWS credentials before anything runs."""

pytest_plugins = [
    "tests.plugins.network",
    "tests.plugins.postgres",
    "tests.plugins.sqs",
    "tests.plugins.aws",
]
