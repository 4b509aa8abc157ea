"use strict";
// The dashboard: status banner, animated map (observed scans, then the six leads), one card per dam,
// alert history. Polls the status every POLL_S seconds and reloads everything when a new run is stored.
const params = new URLSearchParams(location.search);
const POLL_S = Number(params.get("poll")) || 15;
const FRAME_MS = Number(params.get("frame_ms")) || 800;
const OBSERVED_FRAMES = 6;
const OBSERVED_2H_SCANS = 12;  // the scans of the 2 hours before the issue time, 10 minutes apart
const LEVEL_TEXT = {none: "no alert", advisory: "ADVISORY", emergency: "EMERGENCY"};
const state = {run: null, frames: [], index: 0, timer: null, images: []};

function banner(st) {
  const b = document.getElementById("banner");
  const none = st.newest_scan_time === null;  // a new installation: no scan has arrived yet
  const parts = [
    none ? "no scan received yet" : `newest scan ${NC.utc(st.newest_scan_time)} UTC (${NC.ago(st.newest_scan_age_minutes)} ago)`,
    `forecast lag ${st.forecast_lag_minutes === null ? "–" : st.forecast_lag_minutes + " min"}`,
    `method ${st.method_in_use || "–"}`,
    st.fallback_reason ? `FALLBACK: ${st.fallback_reason}` : "no fallback",
  ];
  if (st.open_alerts.length) parts.push(`${st.open_alerts.length} dam(s) on alert`);
  if (st.inbox_missing) parts.unshift("INBOX FOLDER MISSING: scans cannot arrive");
  if (st.cycle_failures) parts.unshift(`FORECAST CYCLE FAILING (${st.cycle_failures} in a row): ${st.last_cycle_error}`);
  if (st.disk_low) parts.unshift(`LOW DISK: ${st.disk_free_gb} GB free for ${st.disk_free_folders.join(", ")} (limit ${st.min_free_disk_gb} GB)`);
  b.textContent = (st.feed_stale && !none ? `NO NEW SCAN FOR ${NC.ago(st.newest_scan_age_minutes)} (limit ${st.stale_after_minutes} min) · ` : "") + parts.join(" · ");
  b.className = "banner " + (st.feed_stale ? "stale" : st.fallback_reason || st.disk_low || st.cycle_failures || st.inbox_missing ? "warn" : "ok");
  b.dataset.cycleFailures = String(st.cycle_failures || 0);
  b.dataset.diskLow = String(st.disk_low);
  b.dataset.stale = String(st.feed_stale);
  const cards = document.getElementById("dams");
  cards.classList.toggle("stale", st.feed_stale);  // an old forecast must not look current
  document.getElementById("stale-note").hidden = !st.feed_stale;
  document.getElementById("stale-note").textContent = !st.feed_stale ? "" : none ? "NO SCAN YET: no forecast can be made" :
    `STALE: no scan for ${NC.ago(st.newest_scan_age_minutes)}; these forecasts were issued ${NC.utc(st.last_run_issue_time)} UTC`;
}

function legend(lg) {
  const box = document.getElementById("legend");
  box.textContent = "";
  [[lg.dry_colour, "dry"], [lg.no_data_colour, "no data"]].forEach(([c, label]) => {
    const sw = NC.el("span", {class: "swatch"}); sw.style.background = c;
    box.append(NC.el("span", {class: "key"}, sw, label));
  });
  lg.colours.forEach((c, k) => {
    const sw = NC.el("span", {class: "swatch"}); sw.style.background = c;
    box.append(NC.el("span", {class: "key"}, sw, `${lg.levels_mm_h[k]}`));
  });
  box.append(NC.el("span", {class: "muted small", text: " mm/h"}));
}

function setFrame(k) {
  if (!state.frames.length) return;
  state.index = (k + state.frames.length) % state.frames.length;
  const f = state.frames[state.index];
  const img = document.getElementById("map");
  img.src = f.url;
  img.dataset.index = String(state.index);
  document.getElementById("slider").value = String(state.index);
  document.getElementById("frame-label").textContent = f.label;
  document.getElementById("frame-label").className = f.lead > 0 ? "forecast" : "observed";
  document.getElementById("slider-label").textContent = `${state.index + 1} / ${state.frames.length}`;
}

function play(on) {
  const btn = document.getElementById("play");
  if (state.timer) { clearInterval(state.timer); state.timer = null; }
  if (on) state.timer = setInterval(() => setFrame(state.index + 1), FRAME_MS);
  btn.textContent = on ? "❚❚ pause" : "▶ play";
  btn.setAttribute("aria-label", on ? "pause" : "play");
  btn.dataset.playing = String(on);
}

function buildFrames(series) {
  const issue = series.issue_time;
  const observed = series.observed_times.slice(-OBSERVED_FRAMES);
  const issueMs = Date.parse(issue);
  const frames = observed.map(t => {
    const m = Math.round((Date.parse(t) - issueMs) / 60000);
    return {url: `/api/v1/scans/${t}.png`, lead: m, label: `observed ${NC.utc(t)} UTC${m ? ` (${m} min)` : " (issue time)"}`};
  });
  for (const lead of [10, 20, 30, 40, 50, 60]) {
    frames.push({url: `/api/v1/fields/${issue}/${lead}.png`, lead, label: `forecast +${lead} min (valid ${NC.utc(new Date(issueMs + lead * 60000).toISOString())} UTC)`});
  }
  state.frames = frames;
  state.images = frames.map(f => { const i = new Image(); i.src = f.url; return i; });  // preload
  const slider = document.getElementById("slider");
  slider.max = String(frames.length - 1);
  document.getElementById("run-label").textContent = ` ${series.method} run issued ${NC.utc(issue)} UTC`;
  setFrame(Math.min(state.index, frames.length - 1));
}

function chart(dam, s) {
  // Bars: observed catchment-mean rain rate per scan; line: the forecast's mean rate per lead.
  const W = 320, H = 96, pad = 18;
  const obs = s.observed.filter(p => p.mean_mm_h !== null).map(p => [Date.parse(p.time), p.mean_mm_h]);
  const fc = s.forecast.map(p => [Date.parse(p.time), p.mean_mm_h]);
  const pts = obs.concat(fc);
  const svg = NC.svg("svg", {viewBox: `0 0 ${W} ${H}`, class: "spark", role: "img",
    "aria-label": `${dam}: observed and forecast catchment rain`});
  if (!pts.length) return svg;
  const t0 = Math.min(...pts.map(p => p[0])) - 5 * 60000, t1 = Math.max(...pts.map(p => p[0])) + 5 * 60000;
  const ymax = Math.max(1, ...pts.map(p => p[1])) * 1.1;
  const X = t => pad + (t - t0) / (t1 - t0) * (W - 2 * pad), Y = y => H - pad - y / ymax * (H - 2 * pad);
  const bw = Math.max(1.5, (W - 2 * pad) * 600000 / (t1 - t0) * 0.8);
  const issueT = fc.length ? Date.parse(s.forecast[0].time) - 600000 : null;  // the first lead is +10 min
  for (const [t, y] of obs) svg.append(NC.svg("rect", {x: X(t) - bw / 2, y: Y(y), width: bw, height: H - pad - Y(y), class: "obsbar"}));
  if (fc.length) {
    svg.append(NC.svg("line", {x1: X(issueT), x2: X(issueT), y1: 4, y2: H - pad, class: "nowline"}));
    svg.append(NC.svg("polyline", {points: fc.map(([t, y]) => `${X(t)},${Y(y)}`).join(" "), class: "fcline"}));
  }
  svg.append(NC.svg("line", {x1: pad, x2: W - pad, y1: H - pad, y2: H - pad, class: "axisline"}));
  const text = (x, y, anchor, words) => {
    const el = NC.svg("text", {x, y, class: "axis", "text-anchor": anchor}); el.textContent = words; svg.append(el);
  };
  text(pad, 11, "start", `scale top ${ymax.toFixed(1)} mm/h`);
  text(W - pad, 11, "end", "observed ▮  forecast ―");
  const hhmm = t => new Date(t).toISOString().slice(11, 16);
  text(pad, H - 4, "start", `${hhmm(t0 + 5 * 60000)} UTC`);
  if (fc.length) text(X(issueT), H - 4, "middle", `${hhmm(issueT)} issue`);
  text(W - pad, H - 4, "end", hhmm(t1 - 5 * 60000));
  const title = NC.svg("title");
  const peak = obs.length ? obs.reduce((m, p) => (p[1] > m[1] ? p : m)) : null;
  title.textContent = `${dam}: catchment-mean rain rate, observed per scan (bars)` +
    (peak ? `, peak ${peak[1].toFixed(1)} mm/h at ${hhmm(peak[0])} UTC` : "") +
    (fc.length ? `; forecast per lead (line), up to ${Math.max(...fc.map(p => p[1])).toFixed(1)} mm/h` : "");
  svg.prepend(title);
  return svg;
}

function damCards(dams, forecasts, alerts, series) {
  const box = document.getElementById("dams");
  box.textContent = "";
  const level = Object.fromEntries(alerts.map(a => [a.dam, a]));
  for (const d of dams) {
    const rows = forecasts.filter(r => r.dam === d.dam).sort((a, b) => a.lead_minutes - b.lead_minutes);
    const hour = rows.find(r => r.lead_minutes === 60);
    const a = level[d.dam];
    const lv = a ? a.level : "none";
    const card = NC.el("article", {class: `card level-${lv}`, "data-dam": d.dam});
    card.append(NC.el("header", {},
      NC.el("h3", {text: d.dam}), NC.el("span", {class: `badge level-${lv}`, "data-level": lv, text: LEVEL_TEXT[lv] || lv})));
    card.append(NC.el("p", {class: "name muted small", text: d.name}));
    const next = NC.el("span", {class: "next-hour", "data-value": hour ? String(hour.depth_mm) : "", text: hour ? NC.mm(hour.depth_mm) : "–"});
    card.append(NC.el("p", {class: "big"}, next, NC.el("span", {class: "unit", text: " mm next hour"})));
    const facts = [];
    if (hour && "accum_mm_p10" in hour && "accum_mm_p90" in hour) {
      facts.push(`ensemble 10–90 % ${NC.mm(hour.accum_mm_p10, 1)}–${NC.mm(hour.accum_mm_p90, 1)} mm`);
    }
    if (hour && "accum_mm_p50" in hour) facts.push(`p50 ${NC.mm(hour.accum_mm_p50, 1)} mm`);
    if (hour && "accum_mm_p90" in hour) facts.push(`p90 ${NC.mm(hour.accum_mm_p90, 1)} mm`);
    if (hour && hour.prob_accum_ge) {
      for (const [thr, p] of Object.entries(hour.prob_accum_ge)) facts.push(`P(≥${thr} mm) ${(100 * p).toFixed(0)} %`);
    }
    if (a) facts.push(`observed 2 h ${NC.mm(a.observed_2h_mm, 1)} mm`, `3 h ${NC.mm(a.total_3h_mm, 1)} mm`);
    if (a && a.observed_scans < OBSERVED_2H_SCANS) {  // a gap in the feed: the observed 2 h is too low
      facts.push(`observed 2 h from ${a.observed_scans} of ${OBSERVED_2H_SCANS} scans (missing ones count as dry)`);
    }
    const factLine = NC.el("p", {class: "facts small"});
    facts.forEach((f, k) => factLine.append(...(k ? [" · "] : []), NC.el("span", {class: "fact", text: f})));
    card.append(factLine);
    if (series.dams[d.dam]) card.append(chart(d.dam, series.dams[d.dam]));
    if (a) {
      // How sure the level is: the probability of its rule against the threshold that raises it, and why.
      const why = NC.el("details", {class: "reason small"},
        NC.el("summary", {text: `P(alert rule) ${NC.mm(a.probability, 2)} · raised at ≥ ${NC.mm(state.alertProbability, 2)}`}),
        NC.el("span", {text: a.reason}));
      if (lv !== "none") why.open = true;
      card.append(why);
    }
    box.append(card);
  }
  document.getElementById("dams-note").textContent = forecasts.length ? `run ${NC.utc(forecasts[0].issue_time)} UTC, ${forecasts[0].method}` : "no forecast stored yet";
}

function history(rows) {
  const tbody = document.querySelector("#history tbody");
  tbody.textContent = "";
  for (const r of rows.slice(0, 50)) {
    const sent = r.deliveries.length ? r.deliveries.map(d => `${d.status} (${d.attempts})`).join(", ") : (r.notified ? "no webhook" : "not sent");
    tbody.append(NC.el("tr", {class: `level-${r.level}`},
      NC.el("td", {text: NC.utc(r.issue_time)}), NC.el("td", {text: r.dam}), NC.el("td", {text: r.previous_level}),
      NC.el("td", {}, NC.el("span", {class: `badge level-${r.level}`, text: r.level})),
      NC.el("td", {class: "num", text: NC.mm(r.forecast_1h_mm, 1)}), NC.el("td", {class: "num", text: NC.mm(r.total_3h_mm, 1)}),
      NC.el("td", {text: sent})));
  }
  if (!rows.length) tbody.append(NC.el("tr", {}, NC.el("td", {colspan: 7, text: "no change of level yet"})));
}

async function loadRun() {
  const [dams, forecasts, alerts, hist, series] = await Promise.all([
    NC.get("/api/v1/dams"), NC.get("/api/v1/forecasts"), NC.get("/api/v1/alerts"),
    NC.get("/api/v1/alerts/history?limit=50"), NC.get("/api/v1/series?hours=3")]);
  state.alertProbability = dams[0] ? dams[0].thresholds.alert_probability : null;
  damCards(dams, forecasts, alerts, series);
  history(hist);
  if (series.issue_time) buildFrames(series);
  const t = dams[0] && dams[0].thresholds;
  if (t) document.getElementById("rules").textContent = `Advisory: observed 2 h + forecast 1 h ≥ ${t.advisory_3h_mm} mm. ` +
    `Emergency: forecast 1 h ≥ ${t.emergency_1h_mm} mm, or ≥ ${t.emergency_combined_1h_mm} mm with 3 h ≥ ${t.emergency_combined_3h_mm} mm. ` +
    `A level is raised when the ensemble's probability of its rule reaches ${t.alert_probability}; ` +
    `the big number is the deterministic forecast, the 10–90 % range the ensemble's.`;
}

async function poll() {
  try {
    const st = await NC.get("/api/v1/status");
    banner(st);
    const run = `${st.last_run_issue_time}|${st.last_run_stored_at}`;
    if (run !== state.run) { state.run = run; await loadRun(); }
    document.body.dataset.loaded = "true";
  } catch (e) {
    const b = document.getElementById("banner");
    b.className = "banner stale";
    b.textContent = e.why ? `SERVER ERROR: ${e.why} (${e.message.split(":")[0]})` : `cannot reach the server: ${e.message}`;
  }
}

document.getElementById("play").addEventListener("click", () => play(!state.timer));
document.getElementById("slider").addEventListener("input", e => { play(false); setFrame(Number(e.target.value)); });
NC.get("/api/v1/legend").then(legend);
poll().then(() => play(true));
setInterval(poll, POLL_S * 1000);
