// The jobhook dashboard: reads the JSON API with the session cookie (or nothing, in development
// mode), follows /v1/events/stream for live changes, and builds every node with textContent:
// nothing a provider or a client sent is ever parsed as HTML.
"use strict";

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function api(path) {
  const response = await fetch(path, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (response.status === 401) {
    location.assign("/login");
    throw new Error("signed out");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error((body && body.detail) || `${response.status} ${response.statusText}`);
  return body;
}

// Changes (cancel, retry, endpoints) go with the API key: the session cookie only reads. In
// development mode nothing is asked; otherwise the key is asked once, when the cookie is refused,
// and kept in this page's memory only (never stored).
let writeKey = null;

async function send(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (writeKey) headers.Authorization = `Bearer ${writeKey}`;
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    writeKey = null;
    const key = prompt("This change needs an API key (the session only reads). API key:");
    if (key && key.trim()) {
      writeKey = key.trim();
      return send(method, path, body);
    }
    throw new Error("an API key is needed for this change");
  }
  if (response.status === 204) return null;
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new Error((answer && answer.detail) || `${response.status} ${response.statusText}`);
  return answer;
}

// A button that copies `text` (an id, a URL, a secret) to the clipboard.
function copyButton(text, what) {
  const button = el("button", { type: "button", class: "copy", text: "Copy", "aria-label": `Copy ${what}`, title: `Copy ${what}` });
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    event.stopPropagation();
    try {
      await navigator.clipboard.writeText(typeof text === "function" ? text() : text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  return button;
}

function showError(message) {
  const box = $("#error");
  box.hidden = !message;
  box.textContent = message || "";
}

// Only http(s) URLs become links or images: a provider could send `javascript:` too.
function safeUrl(value) {
  try {
    const url = new URL(value, location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

const pad = (n) => String(n).padStart(2, "0");

function when(iso) {
  if (!iso) return el("span", { class: "muted", text: "—" });
  const d = new Date(iso);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const today = d.toDateString() === new Date().toDateString();
  return el("time", { datetime: iso, title: `${iso} (UTC)`, text: today ? time : `${day} ${time}` });
}

function badge(kind, value, title) {
  return el("span", { class: `badge ${kind}-${value}`, text: value, title });
}

function errorText(error) {
  if (!error) return "";
  const code = error.provider_code ? `${error.code} (${error.provider_code})` : error.code;
  return `${code}: ${error.message}`;
}

function progressBar() {
  return el(
    "div",
    { class: "progress" },
    el("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 },
      el("div", { class: "fill" })),
    el("span", { class: "pct" }),
  );
}

function setProgress(node, task) {
  const value = Math.max(0, Math.min(100, Number(task.progress) || 0));
  node.dataset.status = task.status;
  node.querySelector(".fill").style.width = `${value}%`;
  node.querySelector(".bar").setAttribute("aria-valuenow", value);
  node.querySelector(".pct").textContent = `${value}%`;
}

function resultUrls(task) {
  const result = task.result || {};
  const images = Array.isArray(result.images) ? result.images : [];
  const urls = images.length ? images : result.grid_url ? [result.grid_url] : [];
  return urls.map(safeUrl).filter(Boolean);
}

function thumb(url, caption) {
  return el("a", { href: url, target: "_blank", rel: "noopener noreferrer", title: caption || url },
    el("img", { src: url, alt: caption || "result image", decoding: "async" }));
}

const json = (value) => el("pre", { class: "json", text: JSON.stringify(value, null, 2) });

// Live updates: `onTask` for each change; `onReopen` after a dropped stream came back (changes
// may have been missed while it was down).
function follow(url, onTask, onReopen) {
  const status = $("#live");
  const source = new EventSource(url);
  let dropped = false;
  source.addEventListener("open", () => {
    status.textContent = "live";
    status.dataset.state = "live";
    if (dropped) onReopen();
    dropped = false;
  });
  source.addEventListener("error", () => {
    const closed = source.readyState === EventSource.CLOSED;
    status.textContent = closed ? "offline: reload the page" : "reconnecting…";
    status.dataset.state = "down";
    dropped = true;
  });
  source.addEventListener("task", (event) => onTask(JSON.parse(event.data)));
}

// ---- GET / : the task list ------------------------------------------------------------------

const FILTERS = ["status", "provider", "action"];

async function tasksPage() {
  const form = $("#filters");
  const rows = $("#rows");
  const more = $("#more");
  const byId = new Map();
  let cursor = null;
  let generation = 0;

  try {
    const ready = await fetch("/readyz").then((r) => r.json());
    for (const name of ready.providers || []) form.elements.provider.append(el("option", { text: name }));
  } catch {
    // not ready: "any" still works
  }
  const given = new URLSearchParams(location.search);
  for (const name of FILTERS) {
    const value = given.get(name);
    const field = form.elements[name];
    if (value && field.tagName === "SELECT" && ![...field.options].some((o) => o.value === value)) {
      field.append(el("option", { text: value }));
    }
    if (value) field.value = value;
  }

  const filters = () => {
    const query = new URLSearchParams();
    for (const name of FILTERS) {
      const value = form.elements[name].value.trim();
      if (value) query.set(name, value);
    }
    return query;
  };
  const matches = (task) => [...filters()].every(([name, value]) => task[name] === value);

  function update(tr, task) {
    if (Number(tr.dataset.sequence) > task.sequence) return; // an older view than the one shown
    tr.dataset.sequence = task.sequence;
    tr.dataset.status = task.status;
    const error = errorText(task.error);
    tr.querySelector(".c-status").replaceChildren(
      badge("s", task.status, error || null),
      error ? el("div", { class: "err", text: error, title: error }) : "",
    );
    setProgress(tr.querySelector(".progress"), task);
    const urls = resultUrls(task).slice(0, 4);
    const cell = tr.querySelector(".c-result");
    if (cell.dataset.urls !== urls.join(" ")) {
      cell.dataset.urls = urls.join(" ");
      cell.replaceChildren(el("div", { class: "thumbs" }, ...urls.map((u, i) => thumb(u, `image ${i + 1}`))));
    }
  }

  function row(task) {
    const prompt = (task.params && task.params.prompt) || "";
    const tr = el(
      "tr",
      { "data-id": task.id },
      el("td", { class: "mono" }, el("a", { href: `/tasks/${encodeURIComponent(task.id)}`, text: task.id })),
      el("td", { text: task.provider }),
      el("td", { text: task.action },
        task.parent_id ? el("span", { class: "muted", title: `follow-up of ${task.parent_id}`, text: " ↳" }) : null),
      el("td", { class: "prompt", text: prompt, title: prompt || null }),
      el("td", { class: "c-status" }),
      el("td", { class: "c-progress" }, progressBar()),
      el("td", { class: "c-result" }),
      el("td", { class: "c-time" }, when(task.created_at)),
    );
    byId.set(task.id, tr);
    update(tr, task);
    return tr;
  }

  function counted() {
    $("#empty").hidden = rows.children.length > 0;
    $("#count").textContent = `${rows.children.length}${cursor ? "+" : ""} shown`;
  }

  async function load(append) {
    const query = filters();
    query.set("limit", "50");
    if (append && cursor) query.set("cursor", cursor);
    const mine = ++generation;
    try {
      const page = await api(`/v1/tasks?${query}`);
      if (mine !== generation) return; // the filters changed while this page was on its way
      if (!append) {
        rows.replaceChildren();
        byId.clear();
      }
      for (const task of page.data) if (!byId.has(task.id)) rows.append(row(task));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      showError(null);
      counted();
    } catch (error) {
      showError(`Could not load tasks: ${error.message}`);
    }
  }

  let typing = null;
  const changed = () => {
    clearTimeout(typing);
    const query = filters().toString();
    history.replaceState(null, "", query ? `?${query}` : location.pathname);
    load(false);
  };
  form.addEventListener("change", changed);
  form.addEventListener("input", (event) => {
    if (event.target.name !== "action") return;
    clearTimeout(typing);
    typing = setTimeout(changed, 300);
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("reset", () => setTimeout(changed, 0));
  more.addEventListener("click", () => load(true));

  await load(false);
  follow(
    "/v1/events/stream",
    (task) => {
      const tr = byId.get(task.id);
      if (tr) update(tr, task);
      else if (matches(task)) {
        const fresh = row(task);
        fresh.classList.add("new");
        rows.prepend(fresh);
        counted();
      }
    },
    () => load(false),
  );
}

// ---- GET /tasks/{id} : one task, its timeline and its deliveries ---------------------------

const UNFINISHED = ["NOT_START", "SUBMITTED", "IN_PROGRESS", "MODAL"];

function fields(task) {
  const result = task.result || {};
  const parent = task.parent_id
    ? el("a", { class: "mono", href: `/tasks/${encodeURIComponent(task.parent_id)}`, text: task.parent_id })
    : null;
  const rest = Object.fromEntries(Object.entries(result).filter(([k]) => k !== "images" && k !== "grid_url"));
  const pairs = [
    ["Provider", task.provider],
    ["Action", task.action],
    ["Provider task", task.provider_task_id && el("span", { class: "mono", text: task.provider_task_id })],
    ["Parent", parent],
    ["Created", when(task.created_at)],
    ["Updated", when(task.updated_at)],
    ["Finished", task.finished_at && when(task.finished_at)],
    ["Error", task.error && el("span", { class: "err", text: errorText(task.error) })],
    ["Callback", task.callback_url && `${task.callback_url} (${(task.callback_events || []).join(", ") || "all events"})`],
    ["Params", json(task.params || {})],
    ["Metadata", task.metadata && Object.keys(task.metadata).length ? json(task.metadata) : null],
    ["Result", Object.keys(rest).length ? el("details", {}, el("summary", { text: Object.keys(rest).join(", ") }), json(rest)) : null],
  ];
  return pairs.filter(([, value]) => value).flatMap(([name, value]) => [el("dt", { text: name }), el("dd", {}, value)]);
}

function images(task) {
  const result = task.result || {};
  const nodes = [];
  const grid = safeUrl(result.grid_url);
  if (grid && (result.images || []).length) nodes.push(el("figure", { class: "grid-image" }, thumb(grid, "grid"), el("figcaption", { text: "grid" })));
  resultUrls(task).forEach((url, i) => nodes.push(el("figure", {}, thumb(url, `image ${i + 1}`), el("figcaption", { text: String(i + 1) }))));
  for (const video of (result.videos || []).map(safeUrl).filter(Boolean)) {
    nodes.push(el("a", { class: "video", href: video, target: "_blank", rel: "noopener noreferrer", text: "▶ video" }));
  }
  return nodes;
}

function eventRow(event) {
  const detail = event.detail === null || event.detail === undefined ? "" :
    typeof event.detail === "string" ? event.detail : JSON.stringify(event.detail);
  const move = event.from_status || event.to_status
    ? `${event.from_status || "—"} → ${event.to_status || "—"}` : "";
  return el("tr", { "data-outcome": event.outcome },
    el("td", {}, when(event.received_at)),
    el("td", { text: event.source }),
    el("td", { text: event.type }),
    el("td", {}, badge("o", event.outcome)),
    el("td", { class: "mono", text: move }),
    el("td", { class: "num", text: event.progress === null || event.progress === undefined ? "" : `${event.progress}%` }),
    el("td", { class: "detail", text: detail, title: detail || null }),
  );
}

function deliveryRow(d) {
  const answer = [d.last_status, d.last_error].filter((v) => v !== null && v !== undefined && v !== "").join(" · ");
  return el("tr", {},
    el("td", { class: "mono" }, el("a", { href: `/deliveries/${encodeURIComponent(d.id)}`, text: d.id })),
    el("td", { text: d.event_type }),
    el("td", { class: "detail", text: d.url, title: d.url }),
    el("td", {}, badge("d", d.status)),
    el("td", { class: "num", text: d.attempts }),
    el("td", { class: "detail", text: answer, title: answer || null }),
    el("td", {}, when(d.last_attempt_at)),
  );
}

async function taskPage() {
  const ref = decodeURIComponent(location.pathname.split("/")[2] || "");
  const bar = progressBar();
  $("#progress").append(bar);
  let task;
  try {
    task = await api(`/v1/tasks/${encodeURIComponent(ref)}`);
  } catch (error) {
    showError(`Could not load task ${ref}: ${error.message}`);
    return;
  }

  function render(fresh) {
    if (task && fresh.sequence < task.sequence) return;
    task = fresh;
    document.title = `${task.id} · jobhook`;
    $("#title").textContent = task.id;
    $("#status").replaceChildren(badge("s", task.status, errorText(task.error) || null));
    $("#cancel").hidden = !UNFINISHED.includes(task.status);
    renderActions(task);
    setProgress(bar, task);
    $("#fields").replaceChildren(...fields(task));
    const urls = resultUrls(task).join(" ");
    if ($("#images").dataset.urls !== urls) {
      $("#images").dataset.urls = urls;
      $("#images").replaceChildren(...images(task));
    }
  }

  async function loadHistory() {
    try {
      const events = [];
      let cursor = null;
      do {
        const page = await api(`/v1/tasks/${encodeURIComponent(task.id)}/events${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""}`);
        events.push(...page.data);
        cursor = page.next_cursor;
      } while (cursor && events.length < 2000);
      const deliveries = await api(`/v1/deliveries?task_id=${encodeURIComponent(task.id)}`);
      $("#events").replaceChildren(...events.map(eventRow));
      $("#deliveries").replaceChildren(...deliveries.data.map(deliveryRow));
      $("#deliveries-table").hidden = deliveries.data.length === 0;
      $("#no-deliveries").hidden = deliveries.data.length > 0;
      showError(null);
    } catch (error) {
      showError(`Could not load the history: ${error.message}`);
    }
  }

  // Changes come in bursts: re-read at most every 250 ms, and once more a little later for the
  // webhook deliveries a change sets off.
  let soon = null;
  let settled = null;
  const later = (ms) => {
    clearTimeout(soon);
    clearTimeout(settled);
    soon = setTimeout(loadHistory, ms);
    settled = setTimeout(loadHistory, ms + 2500);
  };

  // Follow-ups (U1-U4, V1-V4) of a finished grid, and the modal call of a MODAL task.
  function renderActions(current) {
    const box = $("#task-actions");
    const nodes = [];
    if (current.status === "MODAL") {
      const open = el("button", { type: "button", id: "modal-open", class: "primary", text: "Modal call…" });
      open.addEventListener("click", () => $("#modal-dialog").showModal());
      nodes.push(open);
    }
    const grid = current.status === "SUCCESS" && current.action !== "upscale" && resultUrls(current).length >= 4;
    if (grid) {
      for (const [action, short] of [["upscale", "U"], ["variation", "V"]]) {
        for (const index of [1, 2, 3, 4]) {
          const button = el("button", { type: "button", class: "follow-up", "data-action": action, "data-index": index, text: `${short}${index}`, title: `${action} image ${index}` });
          button.addEventListener("click", async () => {
            button.disabled = true;
            try {
              const child = await send("POST", "/v1/tasks", { action, parent_id: current.id, params: { index } });
              location.assign(`/tasks/${encodeURIComponent(child.id)}`);
            } catch (error) {
              showError(`Could not submit the ${action}: ${error.message}`);
              button.disabled = false;
            }
          });
          nodes.push(button);
        }
      }
    }
    const key = nodes.map((n) => n.textContent).join(" ");
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.replaceChildren(...(grid ? [el("span", { class: "muted", text: "Follow-ups:" })] : []), ...nodes);
    box.hidden = nodes.length === 0;
  }

  const dialog = $("#modal-dialog");
  $("#modal-close").addEventListener("click", () => dialog.close());
  $("#modal-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const body = {};
    const prompt = form.elements.prompt.value.trim();
    if (prompt) body.prompt = prompt;
    const file = form.elements.mask.files[0];
    try {
      if (file) {
        const data = await new Promise((resolve, reject) => {
          const reader = new FileReader();
          reader.onload = () => resolve(String(reader.result));
          reader.onerror = () => reject(new Error("the mask could not be read"));
          reader.readAsDataURL(file);
        });
        body.mask = data.slice(data.indexOf(",") + 1);
      }
      render(await send("POST", `/v1/tasks/${encodeURIComponent(task.id)}/modal`, body));
      dialog.close();
      $("#modal-error").hidden = true;
    } catch (error) {
      $("#modal-error").hidden = false;
      $("#modal-error").textContent = error.message;
    }
  });

  $("#copy-id").replaceWith(copyButton(() => task.id, "the task id"));
  $("#cancel").addEventListener("click", async () => {
    if (!confirm(`Cancel ${task.id}?`)) return;
    const button = $("#cancel");
    button.disabled = true;
    try {
      render(await send("POST", `/v1/tasks/${encodeURIComponent(task.id)}/cancel`));
      showError(null);
    } catch (error) {
      showError(`Could not cancel: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });
  render(task);
  $("#task").hidden = false;
  await loadHistory();
  follow(
    `/v1/events/stream?task_id=${encodeURIComponent(task.id)}`,
    (fresh) => {
      render(fresh);
      later(250);
    },
    async () => {
      render(await api(`/v1/tasks/${encodeURIComponent(task.id)}`));
      later(0);
    },
  );
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "tasks") tasksPage();
  else if (page === "task") taskPage();
});
