"""midjourney-proxy's task shape of a jobhook task (pure: the web front and the planner use it).

A task submitted through `/mj` carries `metadata.mj` (MARK): the client's `state`, the
`description` midjourney-proxy would have written, the prompt a follow-up inherits, and whether
its `callback_url` is a midjourney-proxy `notifyHook` (then the planner sends this shape, not
jobhook's webhook body, to that URL).

The shape is midjourney-proxy's `Task` (novicezk/midjourney-proxy,
src/main/java/com/github/novicezk/midjourney/support/Task.java and dto/TaskDTO.java; the
statuses of enums/TaskStatus.java; the buttons `{customId, emoji, label, type, style}` of
midjourney-proxy-plus' action API, litter-coder/midjourney-proxy-plus and
trueai-org/midjourney-proxy).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

#: The key of `metadata` a task submitted through `/mj` keeps its midjourney-proxy fields under.
MARK = "mj"

#: jobhook's action -> midjourney-proxy's TaskAction.
ACTION_NAMES: Mapping[str, str] = {
    "imagine": "IMAGINE",
    "upscale": "UPSCALE",
    "variation": "VARIATION",
    "high_variation": "VARIATION",
    "low_variation": "VARIATION",
    "reroll": "REROLL",
    "zoom": "ZOOM",
    "pan": "PAN",
    "inpaint": "INPAINT",
    "describe": "DESCRIBE",
    "blend": "BLEND",
    "video": "VIDEO",
}
#: jobhook's actions whose result is a grid of four (its buttons: U1..U4, V1..V4, reroll).
GRID_ACTIONS = frozenset(
    {"imagine", "variation", "high_variation", "low_variation", "reroll", "blend", "zoom", "pan"}
)


def marked(task: Mapping[str, Any]) -> dict[str, Any] | None:
    """`metadata.mj` of a task submitted through `/mj`, else None."""
    metadata = task.get("metadata")
    mark = metadata.get(MARK) if isinstance(metadata, dict) else None
    return mark if isinstance(mark, dict) else None


def notifies(task: Mapping[str, Any]) -> bool:
    """The task's callback_url is a midjourney-proxy notifyHook: it is sent this shape."""
    mark = marked(task)
    return bool(mark and mark.get("notify_hook") and task.get("callback_url"))


def epoch_ms(value: str | None) -> int | None:
    if not value:
        return None
    return int(datetime.fromisoformat(value).timestamp() * 1000)


def buttons(task: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The provider's buttons (APIMart's), or, for a provider that has none, midjourney-proxy's
    grid buttons for a finished grid (their customIds name this task)."""
    result = task.get("result") or {}
    given = result.get("actions") or []
    shown = []
    for button in given:
        custom_id = button.get("custom_id")
        if not isinstance(custom_id, str):
            continue
        label = button.get("label") or ""
        emoji = label if label and not label.isascii() else ""
        shown.append(_button(custom_id, "" if emoji else label, emoji))
    if shown or task.get("status") != "SUCCESS" or task.get("action") not in GRID_ACTIONS:
        return shown
    ref = task["id"]
    shown = [_button(f"MJ::JOB::upsample::{n}::{ref}", f"U{n}") for n in range(1, 5)]
    shown.append(_button(f"MJ::JOB::reroll::0::{ref}::SOLO", "", "\U0001f504"))
    shown += [_button(f"MJ::JOB::variation::{n}::{ref}", f"V{n}") for n in range(1, 5)]
    return shown


def _button(custom_id: str, label: str, emoji: str = "") -> dict[str, Any]:
    return {"customId": custom_id, "emoji": emoji, "label": label, "type": 2, "style": 2}


def mj_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task (jobhook's public view) as midjourney-proxy shows a task."""
    mark = marked(task) or {}
    params = task.get("params") or {}
    result = task.get("result") or {}
    error = task.get("error") or {}
    status = task["status"]
    prompt = params.get("prompt") if isinstance(params.get("prompt"), str) else None
    prompt = prompt or mark.get("prompt") or ""
    images = result.get("images") or []
    image_url = result.get("grid_url") or (images[0] if images else None)
    progress = task.get("progress")
    if status == "SUCCESS":
        progress = 100
    started = status not in ("NOT_START", "SUBMITTED")
    properties: dict[str, Any] = {
        "finalPrompt": prompt,
        "jobhookTaskId": task["id"],
        "provider": task.get("provider"),
        "imageUrls": images,
    }
    if mark.get("notify_hook") and task.get("callback_url"):
        properties["notifyHook"] = task["callback_url"]
    if task.get("parent_id"):
        properties["relatedTaskId"] = task["parent_id"]
    if result.get("prompts"):
        # describe's suggestions: midjourney-proxy shows them in `prompt` and `promptEn`
        prompt = "\n\n".join(result["prompts"])
    return {
        "id": task["id"],
        "action": ACTION_NAMES.get(task["action"], str(task["action"]).upper()),
        "status": status,
        "prompt": prompt,
        "promptEn": prompt,
        "description": mark.get("description") or f"/{task['action']}",
        "state": mark.get("state"),
        "submitTime": epoch_ms(task.get("created_at")),
        "startTime": epoch_ms(task.get("created_at")) if started else None,
        "finishTime": epoch_ms(task.get("finished_at")),
        "imageUrl": image_url,
        "progress": f"{progress or 0}%",
        "failReason": error.get("message") if status in ("FAILURE", "CANCEL") else None,
        "buttons": buttons(task),
        "properties": properties,
    }
