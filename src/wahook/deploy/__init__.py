"""Deploying wahook on AWS: the SAM template (package data), the secrets read at a Lambda's
cold start, and the custom resource that migrates the schema on deploy.

``template.yaml`` sits beside this module so an installed wahook carries it: read it with
``importlib.resources.files("wahook.deploy").joinpath("template.yaml")``. Importing this
package imports nothing else (the receiver's Lambda package stays small).
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable

TEMPLATE = "template.yaml"


def template() -> Traversable:
    """The SAM template shipped with this wahook."""
    return resources.files(__name__).joinpath(TEMPLATE)
