"""The Batchgate CDK app: typed environments (config.py), stacks, one construct per capability."""
import os

# jsii prints a large banner on every start when Node is not its newest supported major; the CDK
# works regardless. The variables list the majors to stay quiet about.
_NODE_MAJORS = ",".join(str(v) for v in range(14, 30))
for _var in ("DEPRECATED", "END_OF_LIFE", "UNTESTED"):
    os.environ.setdefault(f"JSII_SILENCE_WARNING_{_var}_NODE_VERSION", _NODE_MAJORS)
