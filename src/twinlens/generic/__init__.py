"""The `generic` plugin: image + text + label columns from JSONL or CSV.

The manifest format and its reader belong to the contract (`twinlens.contract.manifest`),
so other plugins read tables without importing this plugin. `read_manifest` is still
importable from here because plugins scaffolded before the move import it from here.
"""

from twinlens.contract.manifest import read_manifest
from twinlens.generic.plugin import DEFAULT_REVIEW_THRESHOLD, GenericPlugin

__all__ = ["DEFAULT_REVIEW_THRESHOLD", "GenericPlugin", "read_manifest"]
