"""SQS (moto server) fixtures (filled in by the runtime work)."""
