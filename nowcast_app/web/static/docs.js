"use strict";
(async function () {
  const spec = await NC.get("/openapi.json");
  const box = document.getElementById("endpoints");
  box.textContent = "";
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [verb, op] of Object.entries(ops)) {
      const params = (op.parameters || []).map(p => `${p.name}${p.required ? "" : "?"} (${p.in})`).join(", ");
      box.append(NC.el("div", {class: "endpoint"},
        NC.el("h3", {}, NC.el("code", {text: `${verb.toUpperCase()} ${path}`})),
        NC.el("p", {text: op.summary || ""}),
        NC.el("p", {class: "muted small", text: params ? `parameters: ${params}` : "no parameters"})));
    }
  }
})().catch(e => { document.getElementById("endpoints").textContent = String(e); });
