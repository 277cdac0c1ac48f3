"""aks-platform: reads the stack's config and builds the platform."""

import pulumi

from stacks import build
from stacks.validation import from_pulumi

for name, value in build(from_pulumi()).items():
    pulumi.export(name, value)
