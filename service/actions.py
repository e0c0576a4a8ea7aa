"""The use cases beside `submit`: cancel a task, finish a MODAL task, take a provider's unsigned
hint. Handlers parse and answer; these decide what happens, and every status change they make
goes through ingest.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from service.domain import schedule
from service.domain.models import Observation, task_error
from service.domain.schedule import Schedule
from service.domain.status import TERMINAL, Status
from service.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    ValidationFailed,
)
from service.logging import log
from service.providers import params as check
from service.providers.base import CancelProvider, ModalProvider
from service.providers.client import send
from service.security.ssrf import check_fetch_urls
from service.services import Services
from service.submit import stored_params

#: Seconds a modal call may wait for the provider's request rate before it is refused (503).
MAX_MODAL_WAIT = 5.0
MODAL_FIELDS = frozenset({"prompt", "mask_url", "mask", "speed", "metadata"})


async def cancel(svc: Services, owner: str, ref: str) -> dict[str, Any]:
    """CANCEL a running task of `owner`'s; Conflict if it has already ended.

    A provider that documents a way to cancel (a `CancelProvider`) is asked first, and the
    answer says whether it confirmed (`provider_cancelled`). APIMart, Apiframe and Vtrix
    document none: the task ends CANCEL here, the provider keeps working on it (and may bill
    for it), and `provider_cancelled: false` with `provider_cancel_detail` says so."""
    task = await svc.store.get_task(ref, owner=owner)
    if task is None:
        raise NotFound(f"no task {ref}")
    if task["status"] in TERMINAL:
        raise Conflict(f"the task has already ended {task['status']}")
    confirmed, detail = await _cancel_at_provider(svc, task)
    applied = await svc.ingest(
        task["id"],
        Observation(
            status=Status.CANCEL,
            source="api",
            error=task_error("cancelled", "cancelled by the client"),
            detail=f"cancelled by the client; {detail}",
        ),
    )
    if not applied.decision.applied:
        raise Conflict(f"the task has already ended {applied.task['status']}")
    if task["status"] == Status.NOT_START:
        # A queued task leaves the queue at once (one being sent now is its sender's to drop).
        queued = await svc.store.submission(task["id"])
        if queued is not None and (queued.lease_until or 0.0) <= time.time():
            await svc.store.finish_submission(task["id"])
    return {**applied.task, "provider_cancelled": confirmed, "provider_cancel_detail": detail}


async def _cancel_at_provider(svc: Services, task: dict[str, Any]) -> tuple[bool, str]:
    """Ask the task's provider to cancel it, where the provider can: (confirmed, what happened)."""
    name, provider_task_id = task["provider"], task["provider_task_id"]
    provider = svc.providers.get(name)
    if not isinstance(provider, CancelProvider):
        if task["status"] == Status.MODAL and isinstance(provider, ModalProvider):
            # APIMart settles an inpaint's bill on the modal call's SUCCESS (seed 000), and
            # cancels and refunds a task left in MODAL for 30 minutes (seed 001).
            return False, (
                f"{name} documents no way to cancel a task: it waits for the modal call until "
                "its own 30-minute timeout cancels and refunds it"
            )
        return False, (
            f"{name} documents no way to cancel a task: the provider keeps working on it and "
            "may bill for it (what it reports later is recorded as a conflict)"
        )
    if not provider_task_id:
        return False, f"{name} has not taken the task yet: there is nothing to cancel there"
    try:
        await svc.rates.take_within(provider.name, MAX_MODAL_WAIT)
        response = await send(svc.http, provider, provider.build_cancel(provider_task_id))
        if provider.parse_cancel(response):
            return True, f"{name} confirmed the cancellation"
        return False, f"{name} did not confirm the cancellation: it may finish (and bill for) it"
    except (ProviderRejected, ProviderUnavailable) as exc:
        return False, f"{name} did not confirm the cancellation ({exc.detail})"


async def modal(svc: Services, owner: str, ref: str, body: dict[str, Any]) -> dict[str, Any]:
    """Finish a MODAL task (APIMart's two-step inpaint) with a mask and a prompt: every check
    first, then one claimed call to the provider, then its answer through ingest."""
    for name in body:
        if name not in MODAL_FIELDS:
            raise ValidationFailed(
                name, f"unknown field; expected {', '.join(sorted(MODAL_FIELDS))}"
            )
    check.bounded(body, prefix="")
    task = await svc.store.get_task(ref, owner=owner)
    if task is None:
        raise NotFound(f"no task {ref}")
    if task["status"] != Status.MODAL:
        raise Conflict(f"the task is {task['status']}; a modal call needs a MODAL task")
    provider = svc.providers.get(task["provider"])
    if not isinstance(provider, ModalProvider):
        raise Conflict(f"provider {task['provider']} has no modal call")
    try:
        params = provider.validate_modal(body)
        await check_fetch_urls(svc.guard, params, fields=("mask_url",))
    except ValidationFailed as exc:  # the body's fields are top-level here, not under params
        raise ValidationFailed(exc.field.removeprefix("params."), exc.message) from None
    if not await svc.store.claim_modal(task["id"], time.time()):
        raise Conflict("a modal call for this task is already under way, or it left MODAL")
    try:
        await svc.rates.take_within(provider.name, MAX_MODAL_WAIT)
        response = await send(
            svc.http, provider, provider.build_modal(task["provider_task_id"], params)
        )
        # The task shows what was sent with the modal call (a base64 mask as a summary).
        obs = replace(provider.parse_modal(response), params_patch={"modal": stored_params(params)})
    except BaseException:
        await asyncio.shield(svc.store.release_modal(task["id"]))
        raise
    applied = await svc.ingest(
        task["id"], obs, schedule=schedule.after_submit(provider, 0, time.time())
    )
    if not applied.decision.applied:
        await asyncio.shield(svc.store.release_modal(task["id"]))
        raise Conflict(f"the task is {applied.task['status']}; the modal call was not applied")
    # The answer may name a new provider task (seed 000's example does): the task follows it.
    log.info(
        "task.modal_submitted",
        task_id=task["id"],
        provider=provider.name,
        provider_task_id=applied.task["provider_task_id"],
        previous_provider_task_id=task["provider_task_id"]
        if applied.task["provider_task_id"] != task["provider_task_id"]
        else None,
    )
    return applied.task


async def hint(svc: Services, task_id: str, hints: list[Observation]) -> None:
    """An unsigned callback only says "look again": poll the task now, through the poller (its
    rate limits and Retry-After holds apply), and believe what the provider's API says.
    Forbidden (recorded, refused) when the hint names another provider task."""
    task = await svc.store.get_task(task_id, owner=None)
    if task is None:
        raise NotFound(f"no task {task_id}")
    named = next((h.provider_task_id for h in hints if h.provider_task_id), None)
    if named and task["provider_task_id"] and named != task["provider_task_id"]:
        await svc.ingest(task_id, replace(hints[0], status=None))  # recorded, refused
        raise Forbidden(f"the callback names provider task {named!r}, not this task's")
    if task["status"] not in TERMINAL:
        now = time.time()
        await svc.store.reschedule(task_id, Schedule(next_poll_at=now))
        svc.hub.poll_scheduled(now)
