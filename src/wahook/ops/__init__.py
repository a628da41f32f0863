"""Operating a deployment: check it, send it test webhooks, watch its queue and logs, and
run a local AWS (moto) to try the two-queue architecture on one machine.

Every command here exits with a status a deploy script can gate on (``EXIT_*`` in
``wahook.ops.output``) and masks secrets in all it prints.
"""
