"""The runtime: one asyncio pipeline (``pipeline.Pipeline``) and the sources that feed it.

- ``source``      the ``Source`` protocol and ``Message``
- ``sqs_poll``    SQS long-poll source (``wahook worker``, in ``worker``)
- ``lambda_sqs``  the Lambda handler behind an SQS event source mapping
- ``files``       files, directories, JSONL and stdin (``wahook replay``, in ``replay``)
- ``inprocess``   an asyncio queue the receiver fills (``wahook serve`` without a queue)
- ``stats``, ``metrics``, ``logs``, ``signals``, ``failures``, ``resources``: the rest
"""
