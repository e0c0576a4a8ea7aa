"""Submitting a task: validate, record it, send it to the provider, ingest the provider's answer.

The task row exists (NOT_START) before the provider is called, so a callback that beats the
provider's HTTP answer finds its task; the submission itself is ingested like any observation.

Every accepted task goes through the durable submission queue (issue 13): when the provider has
room (nothing queued ahead, fewer jobs in flight than JOBHOOK_<PROVIDER>_CONCURRENCY, its rate
free) the request takes a slot and sends at once, as before; otherwise, or when the provider
answers 429 / refuses the connection, the task waits queued (NOT_START, `queued: true`) and the
submitter worker (workers/submitter.py) sends it in turn through `submit_queued`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from service.domain import schedule
from service.domain.ids import new_id
from service.domain.models import (
    ACTIONS,
    DEFAULT_CALLBACK_EVENTS,
    EVENT_TYPES,
    Observation,
    task_error,
)
from service.domain.schedule import Schedule
from service.domain.status import Status
from service.errors import (
    Conflict,
    ProviderBusy,
    ProviderRejected,
    ProviderUnavailable,
    StoreUnavailable,
    ValidationFailed,
)
from service.logging import log
from service.providers import params as check
from service.providers.base import Parent, Provider, ProviderRequest, Submitted
from service.providers.client import send
from service.security.ssrf import UnsafeURL, check_fetch_urls
from service.security.urls import MAX_URL_CHARS, BadURL, parse_url
from service.services import Services
from service.store.base import Applied, IdempotencyKey, NewTask, SubmitClaim
from service.web.limits import TooManyRequests

FIELDS = frozenset(
    {"provider", "action", "params", "parent_id", "callback_url", "callback_events", "metadata"}
)
#: Retry-After of a 429 to an owner whose queue for a provider is full.
QUEUE_FULL_RETRY_AFTER = 30
#: Attempts at a submission that failed in a way that is safe to resend.
SUBMIT_ATTEMPTS = 3
#: The longest Retry-After a submission waits out before answering; longer is passed on.
MAX_SUBMIT_WAIT = 5.0
#: Params that name a provider task made outside jobhook (APIMart, Apiframe, Vtrix spellings).
EXTERNAL_PARENT_PARAMS = ("task_id", "parent_job_id", "job_id")
MAX_METADATA_BYTES = 16 * 1024
#: Seconds a submission holds its provider slot (and the task) before another worker may take
#: the task again: longer than any one submission's attempts take.
SUBMIT_LEASE = 180.0
#: A provider whose rate is booked further ahead than this is not sent to inline: queued.
SOON = 1.0
#: Backoff between a queued task's attempts: first, and the most.
RETRY_FIRST = 1.0
RETRY_MOST = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitRequest:
    action: str
    params: dict[str, Any]
    provider: str | None = None
    parent_id: str | None = None
    callback_url: str | None = None
    callback_events: tuple[str, ...] = DEFAULT_CALLBACK_EVENTS
    metadata: Any = None


def parse_submit(body: Mapping[str, Any]) -> SubmitRequest:
    """Check the shape of `POST /v1/tasks`; raises ValidationFailed naming the field."""
    for name in body:
        if name not in FIELDS:
            raise ValidationFailed(
                name, f"unknown field; expected one of {', '.join(sorted(FIELDS))}"
            )
    action = body.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise ValidationFailed("action", f"expected one of {', '.join(ACTIONS)}")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise ValidationFailed("params", "expected an object")
    if "index" in params and (
        not isinstance(params["index"], int)
        or isinstance(params["index"], bool)
        or not 1 <= params["index"] <= 4
    ):
        raise ValidationFailed("params.index", "expected an integer from 1 to 4")
    check.bounded(params)
    for name, longest in (("provider", 64), ("parent_id", 128), ("callback_url", MAX_URL_CHARS)):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > longest):
            raise ValidationFailed(name, f"expected a string of at most {longest} characters")
    callback_url = body.get("callback_url")
    if callback_url is not None:
        _check_url("callback_url", callback_url)
    events = body.get("callback_events", list(DEFAULT_CALLBACK_EVENTS))
    if not isinstance(events, list) or not all(e in EVENT_TYPES for e in events):
        raise ValidationFailed("callback_events", f"expected a list of {', '.join(EVENT_TYPES)}")
    metadata = body.get("metadata")
    if metadata is not None and len(orjson.dumps(metadata)) > MAX_METADATA_BYTES:
        raise ValidationFailed("metadata", f"at most {MAX_METADATA_BYTES} bytes of JSON")
    return SubmitRequest(
        action=action,
        params=params,
        provider=body.get("provider"),
        parent_id=body.get("parent_id"),
        callback_url=callback_url,
        callback_events=tuple(dict.fromkeys(events)),
        metadata=metadata,
    )


def _check_url(field: str, value: str) -> None:
    try:
        parse_url(value)
    except BadURL as exc:
        raise ValidationFailed(field, f"expected an absolute http(s) URL: {exc.reason}") from None


def request_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def stored_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as kept on the task: base64 images (a `mask`, any `data:` URL) are summarised,
    never stored or echoed."""
    kept: dict[str, Any] = {}
    for name, value in params.items():
        if name == "mask" and isinstance(value, str):
            kept[name] = _summary("mask", value)
        elif isinstance(value, list):
            kept[name] = [_summary("image", v) if _is_data(v) else v for v in value]
        else:
            kept[name] = _summary("image", value) if _is_data(value) else value
    return kept


def _is_data(value: Any) -> bool:
    return isinstance(value, str) and value[:5].lower() == "data:"


def _summary(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"<base64 {kind}, {len(value)} chars, sha256 {digest}>"


async def submit(
    svc: Services,
    owner: str,
    req: SubmitRequest,
    *,
    idempotency: IdempotencyKey | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create and submit a task. Returns (task, created); created is False for a replay."""
    parent_task = None
    if req.parent_id is not None:
        parent_task = await svc.store.get_task(req.parent_id, owner=owner)
        if parent_task is None:
            raise ValidationFailed("parent_id", f"no task {req.parent_id}")
        if req.provider is not None and req.provider != parent_task["provider"]:
            raise ValidationFailed(
                "provider", f"a follow-up runs on its parent's provider ({parent_task['provider']})"
            )
        if parent_task["status"] != Status.SUCCESS:
            raise Conflict(
                f"the parent task is {parent_task['status']}; follow-ups need a SUCCESS parent",
                errors=[{"field": "parent_id", "message": "parent is not SUCCESS"}],
            )
    name = (
        parent_task["provider"] if parent_task else (req.provider or svc.settings.default_provider)
    )
    provider = svc.providers.get(name)
    if provider is None:
        enabled = ", ".join(sorted(svc.providers)) or "none"
        raise ValidationFailed("provider", f"{name!r} is not enabled here (enabled: {enabled})")
    if req.action not in provider.actions:
        raise ValidationFailed("action", f"{provider.name} does not offer {req.action!r}")
    parent = None
    if parent_task is not None:
        parent = Parent(
            provider_task_id=parent_task["provider_task_id"],
            action=parent_task["action"],
            params=parent_task["params"] or {},
        )
    params = provider.validate(req.action, req.params, parent)
    # Judged on the cleaned params, the very values the provider gets: a check on what the
    # client sent would miss " <id>", which the adapter strips before sending.
    for key in EXTERNAL_PARENT_PARAMS:
        ref = params.get(key)
        # A provider id that is another owner's jobhook task is not this caller's to act on.
        if (
            isinstance(ref, str)
            and await svc.store.get_task(ref, owner=owner) is None
            and await svc.store.get_task(ref, owner=None) is not None
        ):
            raise ValidationFailed(f"params.{key}", "no such task")
    # URLs the provider will fetch, and the URL we will call: public addresses only.
    await check_fetch_urls(svc.guard, params)
    if req.callback_url is not None:
        try:
            await svc.guard.check(req.callback_url)
        except UnsafeURL as exc:
            raise ValidationFailed("callback_url", exc.reason) from None

    waiting = await svc.store.queued_for(owner, provider.name)
    if waiting >= svc.settings.queue_per_owner:
        raise TooManyRequests(
            f"{waiting} of your tasks already wait for {provider.name} (at most "
            f"{svc.settings.queue_per_owner}, JOBHOOK_QUEUE_PER_OWNER); retry later",
            retry_after=QUEUE_FULL_RETRY_AFTER,
        )
    task_id = new_id("task")
    task, created = await svc.store.create_task(
        NewTask(
            id=task_id,
            owner=owner,
            provider=provider.name,
            action=req.action,
            params=stored_params(params),
            parent_id=parent_task["id"] if parent_task else None,
            metadata=req.metadata,
            callback_url=req.callback_url,
            callback_events=req.callback_events,
        ),
        idempotency=idempotency,
    )
    if not created:
        pending = None
        if task["status"] == Status.NOT_START:
            pending = await svc.store.submission(task["id"])
        if pending is not None and (pending.lease_until or 0.0) <= time.time():
            return task, False  # waiting in the queue: the replay answers with it as it is
        if task["status"] == Status.NOT_START:
            raise Conflict(
                "a request with this Idempotency-Key is still being submitted; retry shortly",
                task_id=task["id"],
            )
        return task, False

    queued = {
        "action": req.action,
        "params": params,
        "parent": None
        if parent is None
        else {
            "provider_task_id": parent.provider_task_id,
            "action": parent.action,
            "params": parent.params,
        },
    }
    now = time.time()
    if not await svc.store.enqueue(
        task_id,
        provider=provider.name,
        owner=owner,
        request=queued,
        now=now,
        cap=svc.settings.concurrency(provider.name),
        lease=SUBMIT_LEASE,
        send_now=provider.name not in svc.rates.busy(SOON),
    ):
        svc.hub.submissions_queued()
        log.info("task.queued", task_id=task_id, provider=provider.name, action=req.action)
        return task, True
    callback_url = svc.callback_url(provider.name, task_id) if provider.supports_callbacks else None
    request = provider.build_submit(
        req.action, params, parent=parent, callback_url=callback_url, idempotency_key=task_id
    )
    try:
        submitted = await _send(svc, provider, request)
    except ProviderRejected as exc:
        await svc.ingest(task_id, _refused("provider_rejected", exc.detail, exc.provider_code))
        await svc.store.finish_submission(task_id)
        exc.extra["task_id"] = task_id
        raise
    except ProviderUnavailable as exc:
        if _refused_for_now(exc) or provider.idempotent_submit:
            # Not taken (or safe to resend): the task waits in the queue for the submitter.
            wait = exc.retry_after if exc.retry_after is not None else RETRY_FIRST
            await svc.store.release_submission(
                task_id, due_at=time.time() + wait, last_answer=exc.detail, request=queued
            )
            svc.hub.submissions_queued()
            log.info("task.queued", task_id=task_id, provider=provider.name, reason=exc.detail)
            return task, True
        await svc.ingest(task_id, _refused("provider_unavailable", exc.detail, None))
        await svc.store.finish_submission(task_id)
        exc.extra["task_id"] = task_id
        raise
    # The provider has the task (and may bill for it): record that even if this request is
    # cancelled or the store stumbles, or the task would never be polled.
    applied = await asyncio.shield(
        _record_accepted(
            svc,
            task_id,
            submitted,
            schedule.after_submit(provider, svc.settings.reconcile_after, time.time()),
        )
    )
    await svc.store.finish_submission(task_id)
    log.info(
        "task.submitted",
        task_id=task_id,
        provider=provider.name,
        provider_task_id=submitted.provider_task_id,
        action=req.action,
        parent_id=task["parent_id"],
    )
    return applied.task, True


def _refused_for_now(exc: ProviderUnavailable) -> bool:
    """The provider did not take the request (a 429, or it never arrived): safe to resend."""
    return not exc.reached or isinstance(exc, ProviderBusy)


def retry_delay(attempts: int, rng: random.Random, retry_after: float | None) -> float:
    """Seconds before a queued task's next attempt: exponential backoff with +-20% jitter,
    never sooner than the provider's Retry-After."""
    backoff = min(RETRY_MOST, RETRY_FIRST * 2 ** max(0, attempts - 1))
    backoff *= rng.uniform(0.8, 1.2)
    return float(max(backoff, retry_after or 0.0))


async def submit_queued(
    svc: Services,
    provider: Provider,
    claim: SubmitClaim,
    *,
    clock: Any = time.time,
    rng: random.Random | None = None,
) -> str:
    """One attempt at a queued task the submitter claimed; returns what came of it (submitted,
    requeued, or the error code it ended with). Every ending goes through ingest."""
    rng = rng or random.Random()
    task = await svc.store.get_task(claim.task_id, owner=None)
    if task is None or task["status"] != Status.NOT_START:
        await svc.store.finish_submission(claim.task_id)  # ended meanwhile (cancel, timer)
        return "gone"
    timeout = svc.settings.submit_timeout
    deadline = claim.queued_at + timeout
    if claim.reclaimed and not provider.idempotent_submit:
        return await _end(
            svc,
            claim,
            "submit_unknown",
            f"jobhook stopped while sending the task to {provider.name}: {provider.name} may "
            "or may not have it, and it takes no idempotency key, so the task is not sent again",
        )
    req = claim.request
    if not req.get("action"):  # sent inline by a process that stopped before it answered
        return await _end(
            svc,
            claim,
            "submit_interrupted",
            f"jobhook stopped while sending the task to {provider.name}; it may or may not have it",
        )
    if clock() >= deadline:
        return await _end(svc, claim, "submit_timeout", timed_out(timeout, claim.last_answer))
    parent = Parent(**req["parent"]) if req.get("parent") else None
    callback_url = (
        svc.callback_url(provider.name, claim.task_id) if provider.supports_callbacks else None
    )
    request = provider.build_submit(
        req["action"],
        req["params"],
        parent=parent,
        callback_url=callback_url,
        idempotency_key=claim.task_id,
    )
    bucket = svc.rates.bucket(provider.name)
    await bucket.take()
    response = None
    try:
        response = await send(svc.http, provider, request)
        submitted = provider.parse_submit(response)
    except ProviderRejected as exc:
        return await _end(
            svc, claim, "provider_rejected", exc.detail, provider_code=exc.provider_code
        )
    except ProviderUnavailable as exc:
        if response is not None and exc.retry_after:
            bucket.hold(exc.retry_after)
        refused = _refused_for_now(exc) or (response is not None and response.status_code == 429)
        if not (refused or provider.idempotent_submit):
            return await _end(
                svc,
                claim,
                "submit_unknown",
                f"{provider.name} gave no clear answer ({exc.detail}): it may or may not have "
                "the task, and it takes no idempotency key, so the task is not sent again",
            )
        wait = retry_delay(claim.attempts, rng, exc.retry_after)
        if clock() + wait >= deadline:
            return await _end(svc, claim, "submit_timeout", timed_out(timeout, exc.detail))
        await svc.store.release_submission(
            claim.task_id, due_at=clock() + wait, last_answer=exc.detail
        )
        log.info(
            "task.requeued",
            task_id=claim.task_id,
            provider=provider.name,
            attempts=claim.attempts,
            retry_in=round(wait, 2),
            reason=exc.detail,
        )
        return "requeued"
    await asyncio.shield(
        _record_accepted(
            svc,
            claim.task_id,
            submitted,
            schedule.after_submit(provider, svc.settings.reconcile_after, time.time()),
        )
    )
    await svc.store.finish_submission(claim.task_id)
    log.info(
        "task.submitted",
        task_id=claim.task_id,
        provider=provider.name,
        provider_task_id=submitted.provider_task_id,
        action=req["action"],
        attempts=claim.attempts,
        queued_seconds=round(clock() - claim.queued_at, 3),
    )
    return "submitted"


def timed_out(timeout: float, last: str | None) -> str:
    return f"the provider did not accept the task within {timeout:g} s (JOBHOOK_SUBMIT_TIMEOUT)" + (
        f"; its last answer: {last}" if last else ""
    )


async def _end(
    svc: Services, claim: SubmitClaim, code: str, message: str, *, provider_code: str | None = None
) -> str:
    await svc.ingest(claim.task_id, _refused(code, message, provider_code))
    await svc.store.finish_submission(claim.task_id)
    return code


async def _send(svc: Services, provider: Provider, request: ProviderRequest) -> Submitted:
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        response = None
        try:
            # The provider's request rate, shared with the poller: a submission that would wait
            # longer than MAX_SUBMIT_WAIT for it is refused (503, Retry-After), never sent.
            await svc.rates.take_within(provider.name, MAX_SUBMIT_WAIT)
            response = await send(svc.http, provider, request)
            return provider.parse_submit(response)
        except ProviderUnavailable as exc:
            if response is not None and exc.retry_after:  # the provider asked us all to wait
                svc.rates.bucket(provider.name).hold(exc.retry_after)
            # Resend only what cannot bill twice: a request that never arrived, a 429 (refused
            # before any work), or any failure at a provider that honours our Idempotency-Key
            # (the task id). A timeout or 5xx elsewhere may have created the task.
            refused = (
                not exc.reached
                or isinstance(exc, ProviderBusy)
                or (response is not None and response.status_code == 429)
            )
            wait = exc.retry_after if exc.retry_after is not None else 0.5 * attempt
            if (
                attempt == SUBMIT_ATTEMPTS
                or not (refused or provider.idempotent_submit)
                or wait > MAX_SUBMIT_WAIT  # the caller retries later (Retry-After is passed on)
            ):
                raise
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


async def _record_accepted(
    svc: Services, task_id: str, submitted: Submitted, sched: Schedule
) -> Applied:
    for attempt in range(1, 6):
        try:
            return await svc.ingest(task_id, submitted.observation, schedule=sched)
        except StoreUnavailable:
            if attempt == 5:
                log.error(
                    "task.orphaned",
                    task_id=task_id,
                    provider_task_id=submitted.provider_task_id,
                    message="the provider accepted the task but the store could not record it",
                )
                raise
            await asyncio.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _refused(code: str, message: str, provider_code: str | None) -> Observation:
    return Observation(
        status=Status.FAILURE,
        source="api",
        error=task_error(code, message, provider_code),
        detail=message,
    )
