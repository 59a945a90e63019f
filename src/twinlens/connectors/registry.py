"""Connectors by name, from the `twinlens.connectors` entry-point group.

Zendesk and Freshdesk are declared there by TwinLens's own pyproject.toml, like any other
package's connector; they are also known without the entry points, so a checkout whose
installed metadata predates them still has them.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

from twinlens.connectors.contract import Connector
from twinlens.contract.errors import InputError

GROUP = "twinlens.connectors"
BUILT_IN = {"zendesk": "twinlens.connectors.zendesk:ZendeskConnector",
            "freshdesk": "twinlens.connectors.freshdesk:FreshdeskConnector"}


@functools.lru_cache(maxsize=1)
def _declared() -> dict[str, str]:
    found = dict(BUILT_IN)
    found.update({ep.name: ep.value for ep in entry_points(group=GROUP)})
    return found


def connector_names() -> list[str]:
    return sorted(_declared())


@functools.lru_cache(maxsize=None)
def get_connector(name: str) -> Connector:
    """The connector registered as `name`; InputError naming the known ones otherwise."""
    target = _declared().get(name)
    if target is None:
        raise InputError("kind", f"unknown connector {name!r}; installed: {', '.join(connector_names())}")
    module_name, _, attribute = target.partition(":")
    connector = getattr(importlib.import_module(module_name), attribute)()
    if not isinstance(connector, Connector) or connector.name != name:
        raise InputError("kind", f"entry point {name!r} ({target}) is not a Connector named {name!r}")
    return connector
