// The operator's console (issue 15): deliveries, one delivery with its attempts, endpoints.
// Uses dashboard.js's helpers (el, api, send, when, badge, copyButton, follow, showError); like
// it, every node is built with textContent.
"use strict";

const endpointLabel = (d) => d.endpoint_id || "task callback";

function answerCode(code) {
  if (code === null || code === undefined) return el("span", { class: "muted", text: "—" });
  return el("span", { class: `code code-${String(code)[0]}xx`, text: code });
}

// ---- GET /deliveries : the delivery log, filtered, live ------------------------------------

const DELIVERY_FILTERS = ["status", "task_id"];

async function deliveriesPage() {
  const form = $("#filters");
  const rows = $("#rows");
  const more = $("#more");
  let cursor = null;
  let generation = 0;
  const given = new URLSearchParams(location.search);
  for (const name of DELIVERY_FILTERS) if (given.get(name)) form.elements[name].value = given.get(name);

  const filters = () => {
    const query = new URLSearchParams();
    for (const name of DELIVERY_FILTERS) {
      const value = form.elements[name].value.trim();
      if (value) query.set(name, value);
    }
    return query;
  };

  function row(d) {
    const link = `/deliveries/${encodeURIComponent(d.id)}`;
    return el("tr", { "data-id": d.id, "data-status": d.status },
      el("td", { class: "mono" }, el("a", { href: link, text: d.id })),
      el("td", {}, badge("d", d.status)),
      el("td", { class: "detail", title: d.url },
        el("span", { class: "mono", text: endpointLabel(d) }), el("div", { class: "muted small", text: d.url })),
      el("td", { text: d.event_type }),
      el("td", { class: "mono" }, el("a", { href: `/tasks/${encodeURIComponent(d.task_id)}`, text: d.task_id })),
      el("td", { class: "num", text: d.attempts }),
      el("td", { class: "num" }, answerCode(d.last_status)),
      el("td", { class: "detail", text: d.last_error || "", title: d.last_error || null }),
      el("td", { class: "c-time" }, d.status === "pending" ? when(d.next_attempt_at) : el("span", { class: "muted", text: "—" })),
      el("td", { class: "c-time" }, when(d.created_at)),
    );
  }

  // Reloads keep what was shown (first page, or as many as "Load more" brought) in place.
  async function load(append) {
    const query = filters();
    query.set("limit", "50");
    if (append && cursor) query.set("cursor", cursor);
    const mine = ++generation;
    try {
      const page = await api(`/v1/deliveries?${query}`);
      if (mine !== generation) return;
      if (append) rows.append(...page.data.map(row));
      else rows.replaceChildren(...page.data.map(row));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      $("#empty").hidden = rows.children.length > 0;
      $("#count").textContent = `${rows.children.length}${cursor ? "+" : ""} shown`;
      showError(null);
    } catch (error) {
      showError(`Could not load deliveries: ${error.message}`);
    }
  }

  const changed = () => {
    const query = filters().toString();
    history.replaceState(null, "", query ? `?${query}` : location.pathname);
    load(false);
  };
  let typing = null;
  form.addEventListener("change", changed);
  form.addEventListener("input", (event) => {
    if (event.target.name !== "task_id") return;
    clearTimeout(typing);
    typing = setTimeout(changed, 300);
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("reset", () => setTimeout(changed, 0));
  more.addEventListener("click", () => load(true));

  await load(false);
  // Live: a task change sets deliveries off; attempts themselves change no task, so the first
  // page is also read again every few seconds (not while "Load more" pages are shown).
  let soon = null;
  const refresh = () => {
    clearTimeout(soon);
    soon = setTimeout(() => { if (!cursor || rows.children.length <= 50) load(false); }, 400);
  };
  follow("/v1/events/stream", refresh, refresh);
  setInterval(() => { if (!document.hidden) refresh(); }, 3000);
}

// ---- GET /deliveries/{id} : one delivery, its attempts and its signed body ------------------

function attemptRow(a) {
  const response = a.response || "";
  return el("tr", {},
    el("td", { class: "num", text: a.attempt }),
    el("td", { class: "c-time" }, when(a.at)),
    el("td", { class: "num", text: a.duration_ms === null ? "—" : `${Math.round(a.duration_ms)} ms` }),
    el("td", { class: "num" }, answerCode(a.http_status)),
    el("td", { class: "detail mono", text: response, title: response || null }),
    el("td", { class: "detail err-text", text: a.error || "", title: a.error || null }),
  );
}

async function deliveryPage() {
  const ref = decodeURIComponent(location.pathname.split("/")[2] || "");
  const path = `/v1/deliveries/${encodeURIComponent(ref)}`;
  let current = null;

  function render(d) {
    current = d;
    document.title = `${d.id} · jobhook`;
    $("#title").textContent = d.id;
    $("#status").replaceChildren(badge("d", d.status));
    $("#retry").hidden = false; // a pending one: due now (left alone while an attempt is under way)
    $("#retry").textContent = d.status === "delivered" ? "Send again" : "Retry now";
    const pairs = [
      ["Delivery", el("span", {}, el("span", { class: "mono", text: d.id }), " ", copyButton(d.id, "the delivery id"))],
      ["Endpoint", el("span", { class: "mono", text: endpointLabel(d) })],
      ["URL", el("span", {}, el("span", { class: "mono", text: d.url }), " ", copyButton(d.url, "the URL"))],
      ["Event", `${d.event_type} (sequence ${d.sequence})`],
      ["Task", el("a", { class: "mono", href: `/tasks/${encodeURIComponent(d.task_id)}`, text: d.task_id })],
      ["Attempts", String(d.attempts)],
      ["Last answer", [d.last_status, d.last_error].filter((v) => v !== null && v !== undefined && v !== "").join(" · ") || "—"],
      ["Next attempt", d.status === "pending" ? when(d.next_attempt_at) : null],
      ["Delivered", d.delivered_at ? when(d.delivered_at) : null],
      ["Created", when(d.created_at)],
    ];
    $("#fields").replaceChildren(
      ...pairs.filter(([, v]) => v).flatMap(([name, value]) => [el("dt", { text: name }), el("dd", {}, value)]),
    );
    const history = d.attempt_history || [];
    $("#attempts").replaceChildren(...history.slice().reverse().map(attemptRow));
    $("#attempts-table").hidden = history.length === 0;
    $("#no-attempts").hidden = history.length > 0;
    let pretty = d.body;
    try {
      pretty = JSON.stringify(JSON.parse(d.body), null, 2);
    } catch {
      // not JSON: shown as it is
    }
    $("#body").textContent = pretty;
  }

  async function reload() {
    try {
      render(await api(path));
      showError(null);
    } catch (error) {
      showError(`Could not load delivery ${ref}: ${error.message}`);
    }
  }

  $("#copy-body").replaceWith(copyButton(() => (current ? current.body : ""), "the signed body"));
  $("#retry").addEventListener("click", async () => {
    const button = $("#retry");
    button.disabled = true;
    try {
      await send("POST", `${path}/retry`);
      $("#notice").hidden = false;
      $("#notice").textContent = "Queued: the deliverer sends it now.";
      await reload();
    } catch (error) {
      showError(`Could not retry: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });

  await reload();
  if (!current) return;
  $("#delivery").hidden = false;
  // While pending, follow it (attempts change no task, so this reads again every 1.5 s).
  $("#live").textContent = "live";
  $("#live").dataset.state = "live";
  setInterval(() => {
    if (!document.hidden && current && current.status === "pending") reload();
  }, 1500);
}

// ---- GET /endpoints : list, create, enable, rotate, delete ---------------------------------

function showSecret(title, secret) {
  $("#secret-title").textContent = title;
  $("#secret-value").textContent = secret;
  $("#secret").hidden = false;
  $("#secret-done").focus();
}

async function endpointsPage() {
  const rows = $("#rows");
  const form = $("#create");
  $("#copy-secret").replaceWith(copyButton(() => $("#secret-value").textContent, "the secret"));
  $("#secret-done").addEventListener("click", () => {
    $("#secret").hidden = true;
    $("#secret-value").textContent = "";
  });

  async function act(button, work) {
    button.disabled = true;
    try {
      await work();
      showError(null);
      await load();
    } catch (error) {
      showError(error.message);
    } finally {
      button.disabled = false;
    }
  }

  function actions(ep) {
    const path = `/v1/endpoints/${encodeURIComponent(ep.id)}`;
    const cell = el("td", { class: "actions" });
    if (ep.disabled) {
      const enable = el("button", { type: "button", class: "enable", text: "Enable" });
      enable.addEventListener("click", () => act(enable, () => send("POST", `${path}/enable`)));
      cell.append(enable);
    }
    const rotate = el("button", { type: "button", class: "rotate", text: "Rotate secret" });
    rotate.addEventListener("click", () => act(rotate, async () => {
      if (!confirm(`Rotate the secret of ${ep.id}? The old one keeps signing beside it for 24 h.`)) return;
      const fresh = await send("POST", `${path}/rotate-secret`);
      showSecret(`New secret of ${ep.id}`, fresh.secret);
    }));
    const remove = el("button", { type: "button", class: "delete danger", text: "Delete" });
    remove.addEventListener("click", () => act(remove, async () => {
      if (!confirm(`Delete ${ep.id}? Its pending deliveries will not be sent.`)) return;
      await send("DELETE", path);
    }));
    cell.append(rotate, remove);
    return cell;
  }

  function row(ep) {
    const total = ep.attempts_ok + ep.attempts_failed;
    const rate = ep.success_rate === null ? "—" : `${(ep.success_rate * 100).toFixed(1)}%`;
    return el("tr", { "data-id": ep.id, "data-disabled": String(ep.disabled) },
      el("td", { class: "mono" }, ep.id, " ", copyButton(ep.id, "the endpoint id"),
        ep.description ? el("div", { class: "muted small", text: ep.description }) : null),
      el("td", { class: "detail mono", title: ep.url }, ep.url, " ", copyButton(ep.url, "the URL")),
      el("td", { text: ep.events.length ? ep.events.join(", ") : "all" }),
      el("td", {}, ep.disabled
        ? el("span", {}, badge("d", "disabled"), el("div", { class: "err small", text: ep.disabled_reason || "", title: ep.disabled_reason || null }))
        : badge("d", "enabled")),
      el("td", { class: "num rate", title: `${ep.attempts_ok} of ${total} attempts answered 2xx` }, rate,
        el("div", { class: "muted small", text: `${ep.attempts_ok}/${total}` })),
      el("td", { class: "detail" }, ep.last_failure_at ? when(ep.last_failure_at) : el("span", { class: "muted", text: "—" }),
        ep.last_failure ? el("div", { class: "err small", text: ep.last_failure, title: ep.last_failure }) : null),
      el("td", { class: "c-time" }, when(ep.created_at)),
      actions(ep),
    );
  }

  async function load() {
    try {
      const page = await api("/v1/endpoints");
      rows.replaceChildren(...page.data.map(row));
      $("#empty").hidden = page.data.length > 0;
      showError(null);
    } catch (error) {
      showError(`Could not load endpoints: ${error.message}`);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    await act(button, async () => {
      const body = {
        url: form.elements.url.value.trim(),
        events: [...form.querySelectorAll("input[name=events]:checked")].map((i) => i.value),
      };
      const description = form.elements.description.value.trim();
      if (description) body.description = description;
      const created = await send("POST", "/v1/endpoints", body);
      form.reset();
      showSecret(`Secret of ${created.id}`, created.secret);
    });
  });

  await load();
  $("#live").textContent = "refreshed every 10 s";
  $("#live").dataset.state = "live";
  setInterval(() => { if (!document.hidden) load(); }, 10000);
}

// ---- GET /overview : health at a glance, from /metrics --------------------------------------

// Prometheus text: [{name, labels, value}] (comments and histogram buckets are skipped).
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const m = /^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/i.exec(line);
    if (!m || line.startsWith("#")) continue;
    const labels = {};
    for (const pair of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

const sum = (samples, name, where = () => true) =>
  samples.filter((s) => s.name === name && where(s.labels)).reduce((total, s) => total + s.value, 0);

function groupBy(samples, name, label) {
  const out = new Map();
  for (const s of samples) if (s.name === name) out.set(s.labels[label], (out.get(s.labels[label]) || 0) + s.value);
  return [...out.entries()].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function bars(container, rows, kind) {
  const max = Math.max(1, ...rows.map(([, n]) => n));
  container.replaceChildren(...rows.map(([label, n]) => {
    const chart = svg("svg", { viewBox: "0 0 100 8", preserveAspectRatio: "none", class: "bar-svg", "aria-hidden": "true" });
    chart.append(svg("rect", { x: 0, y: 0, width: Math.max(0.5, (n / max) * 100), height: 8, class: `bar-fill ${kind}-${label}` }));
    return el("div", { class: "bar-row" }, el("span", { class: "bar-label", text: label }), chart, el("span", { class: "num", text: n }));
  }));
  if (!rows.length) container.replaceChildren(el("span", { class: "muted", text: "none" }));
}

function sparkline(container, points) {
  const last = points.length ? points[points.length - 1] : 0;
  const max = Math.max(1, ...points);
  const w = 240;
  const h = 48;
  const chart = svg("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none", class: "spark-svg", role: "img", "aria-label": `${last.toFixed(1)} per minute now` });
  if (points.length > 1) {
    const step = w / (points.length - 1);
    const coords = points.map((p, i) => `${(i * step).toFixed(1)},${(h - 2 - (p / max) * (h - 4)).toFixed(1)}`);
    chart.append(svg("polyline", { points: coords.join(" "), class: "spark-line" }));
  }
  container.replaceChildren(chart, el("div", { class: "spark-now", text: `${last.toFixed(1)}/min now · peak ${Math.max(0, ...points).toFixed(1)}` }));
}

function age(seconds) {
  if (!seconds) return "none";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

async function overviewPage() {
  const history = []; // [{at, callbacks, polls, deliveries, failed}]
  const KEEP = 60;
  const perMinute = (key) => history.slice(1).map((h, i) => {
    const before = history[i];
    const dt = (h.at - before.at) / 60000;
    return dt > 0 ? Math.max(0, (h[key] - before[key]) / dt) : 0;
  });

  async function sample() {
    const response = await fetch("/metrics", { credentials: "same-origin" });
    if (response.status === 401) {
      showError("/metrics needs JOBHOOK_METRICS_TOKEN here: scrape it with Prometheus (see the README).");
      $("#live").textContent = "no access";
      $("#live").dataset.state = "down";
      return false;
    }
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const samples = parseMetrics(await response.text());
    const unfinished = ["NOT_START", "SUBMITTED", "IN_PROGRESS", "MODAL"];
    $("#t-unfinished").textContent = sum(samples, "jobhook_tasks", (l) => unfinished.includes(l.status));
    $("#t-backlog").textContent = sum(samples, "jobhook_polls_due") + sum(samples, "jobhook_deliveries_due");
    $("#t-oldest").textContent = age(sum(samples, "jobhook_oldest_unfinished_task_age_seconds"));
    $("#t-dead").textContent = sum(samples, "jobhook_deliveries", (l) => l.status === "dead");
    const attempts = sum(samples, "jobhook_deliveries_total");
    const failed = sum(samples, "jobhook_deliveries_total", (l) => l.result !== "delivered");
    $("#t-failure").textContent = attempts ? `${((failed / attempts) * 100).toFixed(1)}%` : "—";
    $("#t-failure").title = `${failed} of ${attempts} attempts by this process failed`;
    bars($("#c-status"), groupBy(samples, "jobhook_tasks", "status"), "s");
    bars($("#c-provider"), groupBy(samples, "jobhook_tasks", "provider"), "p");
    history.push({
      at: Date.now(),
      callbacks: sum(samples, "jobhook_callbacks_received_total"),
      polls: sum(samples, "jobhook_polls_total"),
      deliveries: attempts,
    });
    if (history.length > KEEP) history.shift();
    sparkline($("#c-callbacks"), perMinute("callbacks"));
    sparkline($("#c-polls"), perMinute("polls"));
    sparkline($("#c-deliveries"), perMinute("deliveries"));
    $("#live").textContent = "live";
    $("#live").dataset.state = "live";
    showError(null);
    return true;
  }

  const tick = async () => {
    try {
      if (!(await sample())) return;
    } catch (error) {
      showError(`Could not read /metrics: ${error.message}`);
    }
    setTimeout(tick, document.hidden ? 15000 : 5000);
  };
  await tick();
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "overview") overviewPage();
  else if (page === "deliveries") deliveriesPage();
  else if (page === "delivery") deliveryPage();
  else if (page === "endpoints") endpointsPage();
});
