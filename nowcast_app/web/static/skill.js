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
  const at = (m, lead, t) => prob.find(r => r.method === m && r.lead_minutes === lead && r.threshold_mm_h === t) || {};
  // where no pixel reached the threshold, a small Brier score is no skill: say that none fell
  const fell = r => r.brier_uncertainty > 0;
  const score = (r, key, digits) => r.brier === undefined ? "–" : fell(r) ? NC.mm(r[key], digits) : "none fell";
  for (const key of [...new Set(prob.map(r => r.method + "|" + r.lead_minutes))]) {  // one row per method and lead
    const [m, lead] = [key.split("|")[0], Number(key.split("|")[1])];
    const five = at(m, lead, 5);
    pbody.append(NC.el("tr", {"data-method": m, "data-lead": lead},
      NC.el("td", {text: m}), NC.el("td", {text: lead}), NC.el("td", {text: five.n_runs ?? at(m, lead, 1).n_runs ?? "–"}),
      ...[1, 5, 10].map(t => NC.el("td", {class: "num", text: score(at(m, lead, t), "brier", 4)})),
      NC.el("td", {class: "num", text: score(five, "brier_reliability", 4)}), NC.el("td", {class: "num", text: score(five, "roc_area", 3)}),
      NC.el("td", {class: "num", text: NC.mm(five.crps_accum_mm, 2)})));
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
