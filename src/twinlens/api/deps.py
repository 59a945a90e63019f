"""Request dependencies, as Annotated aliases: SessionDep, ApiKeyDep, AdminKeyDep,
PluginDep, SettingsDep, BlobsDep, PageDep, SecretBoxDep."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from twinlens.blobs import LocalBlobStore
from twinlens.contract.plugin import Plugin
from twinlens.contract.registry import get_plugin
from twinlens.db.session import Database
from twinlens.services import keys, webhook_secrets
from twinlens.services.keys import Principal
from twinlens.services.paging import PageRequest
from twinlens.services.webhook_secrets import SecretBox
from twinlens.logging_setup import bind_log_context
from twinlens.settings import Settings


# Dependencies that do no I/O are `async def`: FastAPI runs a sync dependency on a worker
# thread, and a job submission resolves about ten of them, so each hop was measurable API
# overhead (py-spy: dependency solving was ~45% of a submission's time in the API process).
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.db


async def get_blobs(request: Request) -> LocalBlobStore:
    return request.app.state.blobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
BlobsDep = Annotated[LocalBlobStore, Depends(get_blobs)]


def get_session(db: DatabaseDep) -> Iterator[Session]:
    """The request's unit of work: committed when the route returns (before the response
    is sent, so a client never reads an uncommitted job), rolled back on error."""
    with db.session() as session:
        yield session


# scope="function": the commit happens before the response goes out.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

# A plugin name to filter by: printable text only (PostgreSQL refuses a NUL in a string, so
# one in a filter would otherwise reach the database as a server error, not a 422).
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
PluginFilter = Annotated[str | None, Query(max_length=100, pattern=PRINTABLE_PATTERN, description="Only this plugin")]
RequiredPluginFilter = Annotated[str, Query(min_length=1, max_length=100, pattern=PRINTABLE_PATTERN, description="The plugin")]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer tl_...`")


def get_principal(session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    principal = keys.authenticate(session, credentials.credentials if credentials else None)
    bind_log_context(tenant=principal.tenant_name)  # the request's later log lines name it
    return principal


ApiKeyDep = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: ApiKeyDep) -> Principal:
    principal.require_admin()
    return principal


AdminKeyDep = Annotated[Principal, Depends(get_admin)]


def get_secret_box(settings: SettingsDep) -> SecretBox:
    """What seals and opens tenants' webhook secrets (the key from settings or data_dir)."""
    return webhook_secrets.secret_box(settings)


SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]


async def get_plugin_dep(name: Annotated[str, Path(description="Plugin name, e.g. support_ticket", max_length=100)]) -> Plugin:
    return get_plugin(name)  # UnknownPluginError -> 404 problem


PluginDep = Annotated[Plugin, Depends(get_plugin_dep)]


async def get_page(
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500, description="next_cursor from the previous page")] = None,
) -> PageRequest:
    """`?limit=&cursor=` of every paginated list; a cursor this API did not hand out is a 422 problem.
    Declare it after the key dependency, so a caller without access is told that first."""
    return PageRequest.from_query(min(limit, settings.page_size_limit), cursor)


PageDep = Annotated[PageRequest, Depends(get_page)]
