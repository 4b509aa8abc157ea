"use strict";
(async function () {
  const rows = await NC.get("/api/v1/skill?by=lead");
  const tbody = document.querySelector("#skill tbody");
  const methods = [...new Set(rows.map(r => r.method))];
  for (const r of rows) {
    tbody.append(NC.el("tr", {"data-method": r.method, "data-lead": r.lead_minutes},
      NC.el("td", {text: r.method}), NC.el("td", {text: r.lead_minutes}), NC.el("td", {text: r.n_forecasts}),
      ...["0.1", "1", "5", "10"].map(t => NC.el("td", {class: "num", text: NC.mm(r["csi_" + t], 3)})),
      NC.el("td", {class: "num", text: NC.mm(r.mae_mm_h, 3)})));
  }
  if (!rows.length) tbody.append(NC.el("tr", {}, NC.el("td", {colspan: 8, text: "nothing verified yet: forecasts are scored when their observed scan arrives"})));
  const series = key => methods.map((m, k) => ({name: m, colour: COLOURS[k % COLOURS.length],
    points: rows.filter(r => r.method === m).map(r => [r.lead_minutes, key(r)])}));
  document.getElementById("chart-csi").append(NC.lineChart(series(r => r["csi_1"] ?? null), {xLabel: "lead (minutes)"}));
  document.getElementById("chart-mae").append(NC.lineChart(series(r => r.mae_mm_h), {xLabel: "lead (minutes)"}));
})().catch(e => { document.querySelector("main").prepend(NC.el("p", {class: "banner stale", text: String(e)})); });
