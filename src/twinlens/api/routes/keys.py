"""API keys (admin) and the caller's own tenant."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from twinlens.api.deps import AdminKeyDep, ApiKeyDep, SessionDep
from twinlens.api.problems import problem_responses
from twinlens.api.schemas import KeyCreate
from twinlens.services import keys
from twinlens.services.views import CreatedKey, KeyList, TenantView, created_key_view, key_view

router = APIRouter(prefix="/v1", tags=["keys"], responses=problem_responses(400, 401, 422))


@router.post("/keys", status_code=201, response_model=CreatedKey, summary="Create an API key (admin)", responses=problem_responses(403))
def create_key(body: KeyCreate, principal: AdminKeyDep, session: SessionDep) -> CreatedKey:
    record, plain = keys.create_key(session, body.tenant, admin=body.admin, name=body.name)
    return created_key_view(record, plain)


@router.get("/keys", response_model=KeyList, summary="List API keys (admin)", responses=problem_responses(403))
def list_keys(principal: AdminKeyDep, session: SessionDep) -> KeyList:
    return KeyList(data=[key_view(k) for k in keys.list_keys(session, principal)])


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key (admin)", responses=problem_responses(403, 404))
def revoke_key(key_id: uuid.UUID, principal: AdminKeyDep, session: SessionDep) -> Response:
    keys.revoke_key(session, principal, key_id)
    return Response(status_code=204)


@router.get("/tenant", response_model=TenantView, summary="The caller's tenant and its webhook signing secret")
def get_tenant(principal: ApiKeyDep, session: SessionDep) -> TenantView:
    return TenantView(id=principal.tenant_id, name=principal.tenant_name, webhook_secret=keys.webhook_secret(session, principal))
