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

  const prob = await NC.get("/api/v1/skill?by=lead&probabilistic=true");
  const pbody = document.querySelector("#prob-skill tbody");
  // where no pixel reached the threshold, a small Brier score is no skill: say that none fell
  const fell = r => r.brier_uncertainty > 0;
  const score = (r, key, digits) => r === undefined ? "–" : fell(r) ? NC.mm(r[key], digits) : "none fell";
  const groups = new Map();  // one row per method and lead, its thresholds side by side
  for (const r of prob) {
    const key = `${r.method} ${r.lead_minutes}`;
    if (!groups.has(key)) groups.set(key, {method: r.method, lead: r.lead_minutes, runs: r.n_runs, crps: r.crps_accum_mm, at: {}});
    groups.get(key).at[r.threshold_mm_h] = r;
  }
  for (const g of groups.values()) {
    pbody.append(NC.el("tr", {"data-method": g.method, "data-lead": g.lead},
      NC.el("td", {text: g.method}), NC.el("td", {text: g.lead}), NC.el("td", {text: g.runs}),
      ...[1, 5, 10].map(t => NC.el("td", {class: "num", text: score(g.at[t], "brier", 4)})),
      NC.el("td", {class: "num", text: score(g.at[5], "brier_reliability", 4)}),
      NC.el("td", {class: "num", text: score(g.at[5], "roc_area", 3)}),
      NC.el("td", {class: "num", text: NC.mm(g.crps, 2)})));
  }
  if (!prob.length) pbody.append(NC.el("tr", {}, NC.el("td", {colspan: 9, text: "no ensemble verified yet: runs are scored when their observed scans arrive"})));
  const probMethods = [...new Set(prob.map(r => r.method))];
  document.getElementById("chart-brier").append(NC.lineChart(probMethods.map((m, k) => ({name: m, colour: COLOURS[k % COLOURS.length],
    points: prob.filter(r => r.method === m && r.threshold_mm_h === 5 && fell(r)).map(r => [r.lead_minutes, r.brier])})),
    {xLabel: "lead (minutes)"}));

  const [dams, damProb] = await Promise.all([NC.get("/api/v1/skill?by=dam"), NC.get("/api/v1/skill?by=dam&probabilistic=true")]);
  const dbody = document.querySelector("#dam-skill tbody");
  // the forecasts' catchment error and, on rows of their own, the ensembles' CRPS of the depth
  const damRows = [...dams, ...damProb.map(r => ({dam: r.dam, method: r.method, n_forecasts: r.n_dam_accumulations,
                                                  crps_accum_mm: r.crps_accum_mm}))];
  for (const r of damRows.sort((a, b) => a.dam.localeCompare(b.dam) || a.method.localeCompare(b.method))) {
    dbody.append(NC.el("tr", {"data-dam": r.dam, "data-method": r.method},
      NC.el("td", {text: r.dam}), NC.el("td", {text: r.method}), NC.el("td", {text: r.n_forecasts}),
      NC.el("td", {class: "num", text: NC.mm(r.mae_mm_h, 3)}), NC.el("td", {class: "num", text: NC.mm(r.mean_forecast_mm_h, 3)}),
      NC.el("td", {class: "num", text: NC.mm(r.mean_observed_mm_h, 3)}),
      NC.el("td", {class: "num", text: NC.mm(r.crps_accum_mm, 2)})));
  }
  if (!damRows.length) dbody.append(NC.el("tr", {}, NC.el("td", {colspan: 7, text: "nothing verified yet"})));
})().catch(e => { document.querySelector("main").prepend(NC.el("p", {class: "banner stale", text: String(e)})); });
