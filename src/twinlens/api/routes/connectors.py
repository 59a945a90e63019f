"""Helpdesk connectors: a tenant admin configures them (credentials are write-only), reads
each one's event log; the helpdesk posts its webhooks to the intake route, which needs no
API key: the helpdesk's signature (Zendesk) or the connector's secret (Freshdesk) is checked."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from twinlens.api.deps import (
    PRINTABLE_PATTERN,
    AdminKeyDep,
    PageDep,
    SecretBoxDep,
    SessionDep,
    SettingsDep,
)
from twinlens.api.problems import problem_responses
from twinlens.services import connectors, connectors_intake
from twinlens.services.connectors import ConnectorOptions
from twinlens.services.views import (
    ConnectorEventList,
    ConnectorEventView,
    ConnectorIntake,
    ConnectorList,
    ConnectorView,
)

router = APIRouter(prefix="/v1", responses=problem_responses(400, 401, 403, 422))
intake_router = APIRouter(prefix="/v1")

# Printable text only: names and mappings end up in tags, fields and the database, where a
# control character (NUL above all) has no place.
Short = Annotated[str, StringConstraints(max_length=200, pattern=PRINTABLE_PATTERN)]
CredentialName = Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=r"^[a-z][a-z0-9_]*$")]
Secret = Annotated[str, StringConstraints(max_length=4000, pattern=PRINTABLE_PATTERN)]


class ConnectorChange(BaseModel):
    """A connector's settings; on PATCH every field is optional and only those given change."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=100, pattern=PRINTABLE_PATTERN)
    base_url: str | None = Field(None, max_length=500, pattern=PRINTABLE_PATTERN, description="e.g. https://acme.zendesk.com or https://acme.freshdesk.com")
    plugin: str | None = Field(None, max_length=100, pattern=PRINTABLE_PATTERN, description="The plugin whose model decides, e.g. support_ticket")
    credentials: dict[CredentialName, Secret] | None = Field(
        None, description="Write-only. Zendesk: webhook_secret (the webhook's signing secret) and email + api_token or "
                          "oauth_token; Freshdesk: api_key and webhook_secret (the secret the automation rule sends). "
                          "On PATCH the names given replace the stored ones; an empty value removes one.")
    fields: dict[Short, Short] | None = Field(None, description="Decision key -> helpdesk field, e.g. {\"fault\": \"360001\"}")
    tag_prefix: str | None = Field(None, max_length=50, pattern=PRINTABLE_PATTERN)
    review_tag: str | None = Field(None, max_length=100, pattern=PRINTABLE_PATTERN, description="Added when the decision needs review; empty: none")
    review_group: str | None = Field(None, max_length=100, pattern=PRINTABLE_PATTERN, description="The group a ticket that needs review moves to")
    attachment_hosts: list[Short] | None = Field(None, max_length=20,
                                                 description="Hosts besides the helpdesk's own that attachments may come from")
    write_back: bool | None = None
    enabled: bool | None = None


class ConnectorCreate(ConnectorChange):
    kind: str = Field(max_length=50, pattern=PRINTABLE_PATTERN, description="zendesk, freshdesk, or an installed connector's name")
    name: str = Field(min_length=1, max_length=100, pattern=PRINTABLE_PATTERN)
    base_url: str = Field(max_length=500, pattern=PRINTABLE_PATTERN)
    plugin: str = Field(max_length=100, pattern=PRINTABLE_PATTERN)
    credentials: dict[CredentialName, Secret]


def _options(body: ConnectorChange) -> ConnectorOptions:
    return ConnectorOptions(**body.model_dump(exclude_unset=True))


@router.post("/connectors", status_code=201, response_model=ConnectorView, responses=problem_responses(404, 409),
             summary="Configure a helpdesk connector (admin)")
def create_connector(body: ConnectorCreate, principal: AdminKeyDep, session: SessionDep, box: SecretBoxDep) -> ConnectorView:
    options = _options(body)
    options.kind = body.kind
    return connectors.connector_view(connectors.create_connector(session, principal, box, options))


@router.get("/connectors", response_model=ConnectorList, summary="The tenant's helpdesk connectors (admin)")
def list_connectors(principal: AdminKeyDep, session: SessionDep) -> ConnectorList:
    return ConnectorList(data=[connectors.connector_view(row) for row in connectors.list_connectors(session, principal)])


@router.get("/connectors/{connector_id}", response_model=ConnectorView, responses=problem_responses(404),
            summary="One helpdesk connector (admin)")
def get_connector(connector_id: uuid.UUID, principal: AdminKeyDep, session: SessionDep) -> ConnectorView:
    return connectors.connector_view(connectors.get_connector_row(session, principal, connector_id))


@router.patch("/connectors/{connector_id}", response_model=ConnectorView, responses=problem_responses(404, 409),
              summary="Change a helpdesk connector (admin)")
def update_connector(connector_id: uuid.UUID, body: ConnectorChange, principal: AdminKeyDep, session: SessionDep,
                     box: SecretBoxDep) -> ConnectorView:
    return connectors.connector_view(connectors.update_connector(session, principal, box, connector_id, _options(body)))


@router.delete("/connectors/{connector_id}", status_code=204, responses=problem_responses(404),
               summary="Delete a helpdesk connector with its ticket log (admin)")
def delete_connector(connector_id: uuid.UUID, principal: AdminKeyDep, session: SessionDep) -> Response:
    connectors.delete_connector(session, principal, connector_id)
    return Response(status_code=204)


@router.get("/connectors/{connector_id}/events", response_model=ConnectorEventList, responses=problem_responses(404),
            summary="The connector's event log, newest first: intakes and every call made for each ticket (admin)")
def list_connector_events(
    connector_id: uuid.UUID, principal: AdminKeyDep, session: SessionDep, page: PageDep,
    ticket_id: Annotated[str | None, Query(max_length=100, pattern=PRINTABLE_PATTERN, description="One ticket's events")] = None,
    kind: Annotated[str | None, Query(max_length=32, pattern=PRINTABLE_PATTERN, description="intake, duplicate, ignored, call, attachment, job, "
                                                                 "write_back, skipped or failed")] = None,
) -> ConnectorEventList:
    rows, next_cursor = connectors.list_events(session, principal, connector_id, page, ticket_id=ticket_id, kind=kind)
    return ConnectorEventList(data=[ConnectorEventView.model_validate(row) for row in rows], next_cursor=next_cursor)


@intake_router.post(
    "/connectors/{kind}/{connector_id}/events", status_code=202, response_model=ConnectorIntake,
    responses=problem_responses(400, 401, 404, 422),
    summary="A helpdesk's webhook (Zendesk signed, Freshdesk with the connector's secret); answered at once, handled by a worker",
)
async def receive_connector_event(
    request: Request, connector_id: uuid.UUID, session: SessionDep, settings: SettingsDep, box: SecretBoxDep,
    kind: Annotated[str, Path(max_length=50, description="The connector's helpdesk, e.g. zendesk")],
    event: Annotated[dict[str, Any], Body(description="The webhook as the helpdesk sends it (docs/connectors/)")],
) -> ConnectorIntake:
    raw = await request.body()  # the signature covers the bytes as sent, not the parsed JSON
    return await anyio.to_thread.run_sync(connectors_intake.receive_event, session, settings, box, kind, connector_id,
                                          dict(request.headers), raw)
