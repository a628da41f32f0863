"""Where decoded events go: the PostgreSQL sink (``wahook.sinks.postgres``, needs asyncpg)
and an in-memory double (``wahook.sinks.memory``), both behind the ``Sink`` contract."""

from wahook.sinks.base import Event, Record, Sink, WriteResult

__all__ = ["Event", "Record", "Sink", "WriteResult"]
