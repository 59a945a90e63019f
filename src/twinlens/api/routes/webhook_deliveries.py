"""The tenant's webhook deliveries: list them (`?status=failed`: the dead letters) and
re-send one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from twinlens.api.deps import ApiKeyDep, PageDep, SessionDep
from twinlens.api.problems import problem_responses
from twinlens.services import webhooks
from twinlens.services.views import DeliveryView

router = APIRouter(prefix="/v1", responses=problem_responses(400, 401, 422))
DeliveryStatus = Literal["pending", "succeeded", "failed"]


class WebhookDeliveryView(DeliveryView):
    job_id: uuid.UUID
    created_at: datetime
    last_error: str | None = Field(description="Why the latest attempt failed, when it did")


class WebhookDeliveryList(BaseModel):
    data: list[WebhookDeliveryView]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null at the end")


@router.get("/webhook-deliveries", response_model=WebhookDeliveryList, summary="List webhook deliveries, newest first")
def list_webhook_deliveries(
    principal: ApiKeyDep,
    session: SessionDep,
    page: PageDep,
    status: Annotated[DeliveryStatus | None, Query(description="failed: deliveries that used up their retries (dead letters)")] = None,
) -> WebhookDeliveryList:
    rows, next_cursor = webhooks.list_deliveries(session, principal, page, status=status)
    return WebhookDeliveryList(data=[WebhookDeliveryView.model_validate(row) for row in rows], next_cursor=next_cursor)


@router.post(
    "/webhook-deliveries/{delivery_id}/redeliver", status_code=202, response_model=WebhookDeliveryView,
    summary="Send a failed delivery again, with a new retry schedule", responses=problem_responses(404, 409),
)
def redeliver_webhook(delivery_id: uuid.UUID, principal: ApiKeyDep, session: SessionDep) -> WebhookDeliveryView:
    return WebhookDeliveryView.model_validate(webhooks.redeliver(session, principal, delivery_id))
