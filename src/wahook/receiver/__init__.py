"""HTTP ingress: the transport-free core, the Lambda adapter, the SQS forwarder, and the
aiohttp app of ``wahook serve``. Import the adapter you need; this package imports nothing
heavy, so the Lambda handler's cold start stays small."""
