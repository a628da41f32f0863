"""wahook: WhatsApp Cloud API webhooks, from Meta's POST to committed PostgreSQL rows.

``wahook.parse`` is the pure core and needs only msgspec; the I/O parts (sinks, runtime,
receiver) need the extras named in the README.
"""

__version__ = "0.1.0"
