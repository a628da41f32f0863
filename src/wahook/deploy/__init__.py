"""AWS deployment: the SAM template, the Lambda packages and what they need at run time."""
