"""Helpdesk connectors, configured per tenant: create, read, change, delete, and the event log.

A tenant admin configures each helpdesk (its URL, credentials, plugin, field/tag mapping,
whether to write back). The credentials are sealed with the service's secrets key (the
Fernet box of services/webhook_secrets.py) as one token and never leave it again: views
list only their names. Workers get a `ConnectorConfig` snapshot, credentials opened.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from twinlens.connectors.contract import Connector as HelpdeskConnector
from twinlens.connectors.contract import FieldMapping
from twinlens.connectors.registry import get_connector
from twinlens.contract.errors import InputError
from twinlens.contract.registry import get_plugin
from twinlens.db.base import utcnow
from twinlens.db.connector_tables import Connector, ConnectorEvent
from twinlens.db.repositories import AuditRepository, TenantRepository
from twinlens.db.repositories.connectors import ConnectorRepository
from twinlens.services.connectors_http import GuardedTransport
from twinlens.services.errors import Conflict, NotFound
from twinlens.services.keys import Principal
from twinlens.services.paging import PageRequest, next_cursor
from twinlens.services.views import ConnectorView
from twinlens.services.webhook_secrets import SecretBox
from twinlens.settings import Settings

MAX_HOSTS = 20


@dataclass
class ConnectorOptions:
    """What a tenant admin sets; every field of a change is optional (None: unchanged)."""

    kind: str | None = None
    name: str | None = None
    base_url: str | None = None
    plugin: str | None = None
    # Given names replace the stored ones; an empty value removes one.
    credentials: dict[str, str] | None = None
    fields: dict[str, str] | None = None
    tag_prefix: str | None = None
    review_tag: str | None = None
    review_group: str | None = None
    attachment_hosts: list[str] | None = None
    write_back: bool | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class ConnectorConfig:
    """One connector as a worker uses it, detached from the session, credentials opened."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    kind: str
    base_url: str
    plugin: str
    credentials: dict[str, str] = field(repr=False)
    mapping: FieldMapping
    attachment_hosts: tuple[str, ...]
    write_back: bool

    @property
    def connector(self) -> HelpdeskConnector:
        return get_connector(self.kind)

    def transport(self, settings: Settings, **kwargs: Any) -> GuardedTransport:
        return GuardedTransport(self.base_url, self.connector.auth(self.credentials), settings,
                                extra_hosts=self.attachment_hosts, **kwargs)


# -- configuration ---------------------------------------------------------------------------
def create_connector(session: Session, principal: Principal, box: SecretBox, options: ConnectorOptions) -> Connector:
    principal.require_admin()
    if not options.kind or not options.name or not options.base_url or not options.plugin:
        raise InputError("connector", "kind, name, base_url and plugin are required")
    connector = get_connector(options.kind)
    row = Connector(tenant_id=principal.tenant_id, kind=options.kind, credentials_sealed="", options={})
    _apply(row, connector, box, options, creating=True)
    repo = ConnectorRepository(session)
    if repo.by_name(principal.tenant_id, row.name) is not None:
        raise Conflict(f"the tenant already has a connector named {row.name!r}", name=row.name)
    repo.add(row)
    _audit(session, principal, "connector.create", row)
    return row


def update_connector(session: Session, principal: Principal, box: SecretBox, connector_id: uuid.UUID,
                     options: ConnectorOptions) -> Connector:
    row = _own(session, principal, connector_id)
    if options.kind is not None and options.kind != row.kind:
        raise InputError("kind", "a connector's helpdesk cannot change; create another connector")
    if options.name is not None and options.name != row.name:
        other = ConnectorRepository(session).by_name(principal.tenant_id, options.name)
        if other is not None:
            raise Conflict(f"the tenant already has a connector named {options.name!r}", name=options.name)
    _apply(row, get_connector(row.kind), box, options, creating=False)
    row.updated_at = utcnow()
    session.flush()
    _audit(session, principal, "connector.update", row)
    return row


def delete_connector(session: Session, principal: Principal, connector_id: uuid.UUID) -> None:
    row = _own(session, principal, connector_id)
    _audit(session, principal, "connector.delete", row)
    ConnectorRepository(session).delete(row)


def get_connector_row(session: Session, principal: Principal, connector_id: uuid.UUID) -> Connector:
    return _own(session, principal, connector_id)


def list_connectors(session: Session, principal: Principal) -> list[Connector]:
    principal.require_admin()
    return ConnectorRepository(session).for_tenant(principal.tenant_id)


def list_events(session: Session, principal: Principal, connector_id: uuid.UUID, page: PageRequest, *,
                ticket_id: str | None = None, kind: str | None = None) -> tuple[list[ConnectorEvent], str | None]:
    """One page of the connector's event log, newest first (one ticket's, given `ticket_id`)."""
    row = _own(session, principal, connector_id)
    result = ConnectorRepository(session).events_page(row.id, ticket_id=ticket_id, kind=kind, after=page.after, limit=page.limit)
    return result.rows, next_cursor(result)


def _own(session: Session, principal: Principal, connector_id: uuid.UUID) -> Connector:
    """The caller's tenant's connector; admins of other tenants (platform admins too) see none."""
    principal.require_admin()
    row = ConnectorRepository(session).get_for_tenant(connector_id, principal.tenant_id)
    if row is None:
        raise NotFound(f"no connector {connector_id}")
    return row


def _apply(row: Connector, connector: HelpdeskConnector, box: SecretBox, options: ConnectorOptions, *, creating: bool) -> None:
    """Check every given option, then set them: a bad one leaves the row as it was."""
    name = _name(options.name) if options.name is not None else row.name
    base_url = connector.check_base_url(options.base_url) if options.base_url is not None else row.base_url
    plugin = get_plugin(options.plugin).name if options.plugin is not None else row.plugin
    credentials = open_credentials(row, box) if not creating else {}
    if options.credentials is not None:
        credentials.update({str(k): str(v) for k, v in options.credentials.items()})
        credentials = {k: v for k, v in credentials.items() if v}
    connector.check_credentials(credentials)
    settings = dict(row.options or {})
    for key in ("tag_prefix", "review_tag", "review_group"):
        value = getattr(options, key)
        if value is not None:
            settings[key] = _short(value, key) or None
    if options.fields is not None:
        settings["fields"] = {_short(k, "fields"): _short(v, "fields") for k, v in options.fields.items()}
    if options.attachment_hosts is not None:
        settings["attachment_hosts"] = _hosts(options.attachment_hosts)
    settings["credential_names"] = sorted(credentials)
    row.name, row.base_url, row.plugin = name, base_url, plugin
    row.credentials_sealed = box.seal(json.dumps(credentials, sort_keys=True))
    row.options = settings
    if options.write_back is not None:
        row.write_back = options.write_back
    if options.enabled is not None:
        row.enabled = options.enabled


def _name(value: str) -> str:
    value = _short(value, "name")
    if not value or len(value) > 100:
        raise InputError("name", "give a name of 1 to 100 characters")
    return value


def _short(value: Any, field_name: str) -> str:
    text = str(value).strip()
    if len(text) > 200:
        raise InputError(field_name, "values are at most 200 characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise InputError(field_name, "control characters are not allowed")
    return text


def _hosts(hosts: list[str]) -> list[str]:
    if len(hosts) > MAX_HOSTS:
        raise InputError("attachment_hosts", f"at most {MAX_HOSTS} hosts")
    cleaned = []
    for host in hosts:
        host = str(host).strip().lower()
        if not host or "/" in host or ":" in host or " " in host:
            raise InputError("attachment_hosts", f"{host!r} is not a host name (no scheme, port or path)")
        cleaned.append(host)
    return sorted(set(cleaned))


def _audit(session: Session, principal: Principal, action: str, row: Connector) -> None:
    # The names of the credentials set, never their values.
    AuditRepository(session).record(action, tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                    target=f"connector:{row.id}",
                                    details={"kind": row.kind, "name": row.name, "credentials": row.options.get("credential_names", [])})


# -- for workers and views ---------------------------------------------------------------------
def open_credentials(row: Connector, box: SecretBox) -> dict[str, str]:
    return json.loads(box.open(row.credentials_sealed)) if row.credentials_sealed else {}


def mapping_of(row: Connector) -> FieldMapping:
    options = row.options or {}
    return FieldMapping(fields=dict(options.get("fields") or {}),
                        tag_prefix=options.get("tag_prefix") or "twinlens_",
                        review_tag=options.get("review_tag", "twinlens_needs_review"),
                        review_group=options.get("review_group"))


def config_of(session: Session, row: Connector, box: SecretBox) -> ConnectorConfig:
    tenant = TenantRepository(session).get(row.tenant_id)
    return ConnectorConfig(
        id=row.id, tenant_id=row.tenant_id, tenant_name=tenant.name, kind=row.kind, base_url=row.base_url, plugin=row.plugin,
        credentials=open_credentials(row, box), mapping=mapping_of(row),
        attachment_hosts=tuple((row.options or {}).get("attachment_hosts") or ()), write_back=row.write_back,
    )


def intake_path(row: Connector) -> str:
    return f"/v1/connectors/{row.kind}/{row.id}/events"


def connector_view(row: Connector) -> ConnectorView:
    options = row.options or {}
    mapping = mapping_of(row)
    return ConnectorView(
        id=row.id, kind=row.kind, name=row.name, base_url=row.base_url, plugin=row.plugin, fields=dict(mapping.fields),
        tag_prefix=mapping.tag_prefix, review_tag=mapping.review_tag, review_group=mapping.review_group,
        attachment_hosts=list(options.get("attachment_hosts") or []), write_back=row.write_back, enabled=row.enabled,
        credential_names=list(options.get("credential_names") or []), intake_path=intake_path(row),
        created_at=row.created_at, updated_at=row.updated_at,
    )


# -- the operator (CLI): no API key, acting for a named tenant ------------------------------------
def operator_for(session: Session, tenant_name: str) -> Principal:
    """The CLI acts as the tenant's admin: the operator has the database at hand anyway."""
    tenant = TenantRepository(session).by_name(tenant_name)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_name!r} (make one with `twinlens keys create --tenant {tenant_name}`)")
    return Principal(tenant_id=tenant.id, tenant_name=tenant.name, key_id=None, is_admin=True)  # type: ignore[arg-type]


def find_connector(session: Session, principal: Principal, reference: str) -> Connector:
    """A connector of the tenant by id or by name."""
    repo = ConnectorRepository(session)
    try:
        row = repo.get_for_tenant(uuid.UUID(reference), principal.tenant_id)
    except ValueError:
        row = repo.by_name(principal.tenant_id, reference)
    if row is None:
        raise NotFound(f"tenant {principal.tenant_name!r} has no connector {reference!r}")
    return row


def configure(session: Session, principal: Principal, box: SecretBox, options: ConnectorOptions) -> tuple[Connector, bool]:
    """Create the named connector, or change it when the tenant has one of that name; (row, created)."""
    existing = ConnectorRepository(session).by_name(principal.tenant_id, (options.name or "").strip())
    if existing is None:
        return create_connector(session, principal, box, options), True
    return update_connector(session, principal, box, existing.id, options), False
