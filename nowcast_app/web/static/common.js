"use strict";
// Shared helpers of the pages (no framework, nothing from the internet).
const NC = {
  async get(url) {
    const r = await fetch(url, {headers: {"Accept": "application/json"}, cache: "no-cache"});
    if (!r.ok) {  // the server's own reason where it gave one (e.g. 503: the database is unavailable)
      const why = await r.json().then(body => body.error, () => null);
      throw Object.assign(new Error(`${url}: HTTP ${r.status}${why ? ": " + why : ""}`), {status: r.status, why});
    }
    return r.json();
  },
  el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  },
  svg(tag, attrs = {}) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  },
  utc(iso) {  // "2010-08-26T05:30:00Z" -> "2010-08-26 05:30"
    return iso ? iso.replace("T", " ").slice(0, 16) : "–";
  },
  mm(x, digits = 2) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); },
  ago(minutes) {
    if (minutes === null || minutes === undefined) return "never";
    if (minutes < 90) return `${minutes.toFixed(0)} min`;
    if (minutes < 48 * 60) return `${(minutes / 60).toFixed(1)} h`;
    return `${(minutes / 1440).toFixed(0)} days`;
  },
  // A line chart: series = [{name, colour, points: [[x, y], ...], dashed}], x and y numbers.
  lineChart(series, {width = 520, height = 220, xLabel = "", yLabel = ""} = {}) {
    const pad = {l: 60, r: 12, t: 26, b: 34};  // room for a label such as 0.000055
    const all = series.flatMap(s => s.points).filter(p => p[1] !== null);
    const svg = NC.svg("svg", {viewBox: `0 0 ${width} ${height}`, class: "linechart", role: "img"});
    if (!all.length) { svg.append(Object.assign(NC.svg("text", {x: 20, y: 30, class: "axis"}), {textContent: "no data yet"})); return svg; }
    const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y1 = Math.max(...ys, 1e-9) * 1.1;
    const X = x => pad.l + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
    const Y = y => height - pad.b - (y / y1) * (height - pad.t - pad.b);
    svg.append(NC.svg("line", {x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, class: "axisline"}));
    svg.append(NC.svg("line", {x1: pad.l, y1: pad.t, x2: pad.l, y2: height - pad.b, class: "axisline"}));
    for (const v of [0, y1 / 2, y1]) {
      const t = NC.svg("text", {x: pad.l - 4, y: Y(v) + 4, class: "axis", "text-anchor": "end"});
      t.textContent = v === 0 ? "0" : String(Number(v.toPrecision(2))); svg.append(t);  // 2 significant digits: 0.023, not 0.02
    }
    for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
      const t = NC.svg("text", {x: X(x), y: height - pad.b + 14, class: "axis", "text-anchor": "middle"});
      t.textContent = x; svg.append(t);
    }
    const xl = NC.svg("text", {x: (width + pad.l) / 2, y: height - 4, class: "axis", "text-anchor": "middle"});
    xl.textContent = xLabel; svg.append(xl);
    series.forEach((s, k) => {
      const pts = s.points.filter(p => p[1] !== null);
      svg.append(NC.svg("polyline", {points: pts.map(p => `${X(p[0])},${Y(p[1])}`).join(" "), fill: "none",
        stroke: s.colour, "stroke-width": 2.5}));
      for (const p of pts) svg.append(NC.svg("circle", {cx: X(p[0]), cy: Y(p[1]), r: 3, fill: s.colour}));
      const t = NC.svg("text", {x: pad.l + 8 + 130 * k, y: 14, class: "axis legend-text"});
      t.textContent = `● ${s.name}`; t.style.fill = s.colour; svg.append(t);
    });
    return svg;
  },
};
const COLOURS = ["#4fc3f7", "#ffb74d", "#aed581", "#f06292", "#ba68c8", "#fff176"];
