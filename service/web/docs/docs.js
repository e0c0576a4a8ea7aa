// Renders /openapi.json: one collapsible block per route, then the schemas. No dependencies.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function schemaName(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.type === "array" && schema.items) return schemaName(schema.items) + "[]";
  return Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
}

function table(headers, rows) {
  return el("table", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h))),
    ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c)))));
}

function route(path, method, op) {
  const body = el("div", { class: "body" });
  if (op.parameters && op.parameters.length) {
    body.append(table(["parameter", "in", "type", "about"], op.parameters.map((p) =>
      [el("code", {}, p.name), p.in, schemaName(p.schema), p.description || ""])));
  }
  const request = op.requestBody && op.requestBody.content["application/json"];
  if (request) body.append(el("p", {}, "Body: ", el("code", {}, schemaName(request.schema))));
  body.append(table(["status", "answer"], Object.entries(op.responses).map(([code, r]) => {
    const content = r.content && Object.values(r.content)[0];
    return [code, r.description + (content ? " (" + schemaName(content.schema) + ")" : "")];
  })));
  if (op.security && op.security.length === 0) body.append(el("p", {}, "No API key needed."));
  return el("details", {}, el("summary", {},
    el("span", { class: "method " + method }, method.toUpperCase()), el("code", {}, path),
    " " + (op.summary || "")), body);
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  document.title = spec.info.title + " " + spec.info.version;
  document.getElementById("about").textContent = spec.info.description;
  const paths = document.getElementById("paths");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) paths.append(route(path, method, op));
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries(spec.components.schemas)) {
    schemas.append(el("details", {}, el("summary", {}, name),
      el("div", { class: "body" }, el("pre", {}, JSON.stringify(schema, null, 2)))));
  }
}

main();
