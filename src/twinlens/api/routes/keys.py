"""API keys (admin) and the caller's own tenant."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, Response

from twinlens.api.deps import AdminKeyDep, ApiKeyDep, SecretBoxDep, SessionDep, SettingsDep
from twinlens.api.problems import problem_responses
from twinlens.api.schemas import KeyCreate, WebhookSecretRotate
from twinlens.services import keys
from twinlens.services.views import CreatedKey, KeyList, TenantView, WebhookSecretRotation, created_key_view, key_view

router = APIRouter(prefix="/v1", tags=["keys"], responses=problem_responses(400, 401, 422))


@router.post(
    "/keys", status_code=201, response_model=CreatedKey, responses=problem_responses(403),
    summary="Create an API key (admin: for its own tenant; platform admin: for any tenant)",
)
def create_key(body: KeyCreate, principal: AdminKeyDep, session: SessionDep) -> CreatedKey:
    record, plain = keys.create_key_for(session, principal, body.tenant, admin=body.admin, name=body.name)
    return created_key_view(record, plain)


@router.get("/keys", response_model=KeyList, summary="List API keys (admin: its tenant's; platform admin: all)",
            responses=problem_responses(403))
def list_keys(principal: AdminKeyDep, session: SessionDep) -> KeyList:
    return KeyList(data=[key_view(k) for k in keys.list_keys(session, principal)])


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key (admin: of its own tenant)",
               responses=problem_responses(403, 404))
def revoke_key(key_id: uuid.UUID, principal: AdminKeyDep, session: SessionDep) -> Response:
    keys.revoke_key(session, principal, key_id)
    return Response(status_code=204)


@router.get("/tenant", response_model=TenantView, summary="The caller's tenant (and, to admin keys, its webhook signing secret)")
def get_tenant(principal: ApiKeyDep, session: SessionDep, box: SecretBoxDep) -> TenantView:
    state = keys.tenant_secret_state(session, principal, box)
    return TenantView(id=principal.tenant_id, name=principal.tenant_name, webhook_secret=state.webhook_secret,
                      previous_secret_valid_until=state.previous_secret_valid_until)


@router.post(
    "/tenant/webhook-secret/rotate", response_model=WebhookSecretRotation, responses=problem_responses(403),
    summary="Replace the webhook signing secret (admin); the old one keeps signing through the overlap",
)
def rotate_webhook_secret(
    principal: AdminKeyDep, session: SessionDep, box: SecretBoxDep, settings: SettingsDep, body: WebhookSecretRotate | None = None,
) -> WebhookSecretRotation:
    requested = body.overlap_seconds if body is not None else None
    overlap = timedelta(seconds=settings.webhook_secret_overlap_seconds if requested is None else requested)
    rotation = keys.rotate_webhook_secret(session, principal, box, overlap)
    return WebhookSecretRotation(webhook_secret=rotation.secret, previous_secret_valid_until=rotation.previous_valid_until)
