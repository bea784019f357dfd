"use strict";
// The dashboard's page. Served, it follows the run through server-sent events (`api/events`:
// `overview` when a record lands, `live` when the loop's phase or its training steps move);
// written by `report --html`, it reads the data inlined in the file and asks nothing of anyone.

const INLINE = window.AUTORESEARCH_DATA || null;
const state = { overview: null, live: null, selected: null, detail: null, sort: { key: "n", dir: 1 } };
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- formatting
function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
const num = (v, digits = 4) => (v == null || !isFinite(v) ? "–" : v.toFixed(digits));
const signed = (v, digits = 4) => (v == null || !isFinite(v) ? "–" : (v > 0 ? "+" : "") + v.toFixed(digits));
const label = (n) => "e" + String(n).padStart(4, "0");
function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${String(m).padStart(2, "0")}m` : m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}
function status(outcome, kind) {
  return kind === "baseline" ? "baseline" : outcome;
}

// ---------------------------------------------------------------- charts (SVG)
// Ticks at round values; `integer` keeps them whole (experiment numbers).
function ticks(lo, hi, count, integer) {
  const span = Math.max(hi - lo, integer ? 1 : 1e-9);
  const raw = span / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw);
  if (integer) step = Math.max(1, Math.round(step));
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
  return { values: out, digits: integer ? 0 : Math.max(0, -Math.floor(Math.log10(step))) };
}

// A frame with axes; returns the scales and the SVG parts so far.
function frame(width, height, x, y, xInteger, xLabel, yLabel) {
  const m = { l: 58, r: 12, t: 10, b: 34 };
  const sx = (v) => m.l + ((v - x[0]) / (x[1] - x[0] || 1)) * (width - m.l - m.r);
  const sy = (v) => height - m.b - ((v - y[0]) / (y[1] - y[0] || 1)) * (height - m.t - m.b);
  const parts = [];
  const xt = ticks(x[0], x[1], 10, xInteger), yt = ticks(y[0], y[1], 5, false);
  for (const v of yt.values) {
    parts.push(`<line class="grid" x1="${m.l}" x2="${width - m.r}" y1="${sy(v)}" y2="${sy(v)}"/>`);
    parts.push(`<text x="${m.l - 6}" y="${sy(v) + 4}" text-anchor="end">${v.toFixed(yt.digits)}</text>`);
  }
  for (const v of xt.values) {
    parts.push(`<text x="${sx(v)}" y="${height - m.b + 16}" text-anchor="middle">${v.toFixed(xt.digits)}</text>`);
  }
  parts.push(`<line class="axis" x1="${m.l}" x2="${width - m.r}" y1="${height - m.b}" y2="${height - m.b}"/>`);
  parts.push(`<line class="axis" x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${height - m.b}"/>`);
  parts.push(`<text x="${(width + m.l) / 2}" y="${height - 4}" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(`<text transform="translate(12 ${(height - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  return { sx, sy, parts, m };
}
const svg = (width, height, parts) => `<svg viewBox="0 0 ${width} ${height}" xmlns="http://www.w3.org/2000/svg">${parts.join("")}</svg>`;

// Loss curves: each series is {points: [[progress, loss]], color, width, name}.
function curveChart(series, height = 220) {
  const all = series.flatMap((s) => s.points);
  if (!all.length) return `<p class="muted">no loss curve yet</p>`;
  const losses = all.map((p) => p[1]).sort((a, b) => a - b);
  // The first steps' loss is far above the rest: the scale follows the bulk of the curve.
  const lo = losses[0], hi = losses[Math.floor(0.97 * (losses.length - 1))];
  const f = frame(640, height, [0, 1], [lo - 0.02 * (hi - lo || 1), hi], false, "share of the budget", "training loss");
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${f.sx(p[0]).toFixed(1)},${f.sy(Math.min(p[1], hi)).toFixed(1)}`).join("");
    f.parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width || 1.5}"><title>${esc(s.name)}</title></path>`);
  }
  let y = 16;
  for (const s of series.filter((s) => s.points.length)) {
    f.parts.push(`<text x="${640 - 150}" y="${y}" style="fill:${s.color}">— ${esc(s.name)}</text>`);
    y += 14;
  }
  return svg(640, height, f.parts);
}

function progressChart(rows) {
  const points = rows.filter((r) => r.kind !== "confirmation");
  const valued = points.filter((r) => r.val_bpb != null);
  if (!valued.length) return `<p class="muted">no result yet: the baseline is being measured</p>`;
  const values = valued.map((r) => r.val_bpb), lo = Math.min(...values);
  const base = (valued.find((r) => r.kind === "baseline") || valued[0]).val_bpb;
  // Far-off failures would squash the interesting range: above it they sit on the top edge.
  const hi = Math.min(Math.max(...values), base + 2 * (base - lo) + 0.02);
  const maxN = Math.max(1, ...points.map((r) => r.n));
  const pad = Math.max(0.05 * (hi - lo), 0.005);
  const f = frame(960, 300, [0, maxN], [lo - pad, hi + pad], true, "experiment", "val_bpb (lower is better)");
  // The running best: a step from each keep to the next, on to the last experiment.
  const keeps = valued.filter((r) => r.outcome === "keep");
  if (keeps.length) {
    let d = "";
    keeps.forEach((r, i) => {
      const next = i + 1 < keeps.length ? keeps[i + 1].n : maxN;
      d += `${i ? "L" : "M"}${f.sx(r.n)},${f.sy(r.val_bpb)}L${f.sx(next)},${f.sy(r.val_bpb)}`;
    });
    f.parts.push(`<path d="${d}" fill="none" stroke="var(--keep)" stroke-width="1.5" opacity="0.7"/>`);
  }
  for (const r of points) {
    const title = `<title>${label(r.n)} ${status(r.outcome, r.kind)} ${num(r.val_bpb, 6)}: ${esc(r.idea || r.description)}</title>`;
    const x = f.sx(r.n);
    if (r.val_bpb == null) {
      f.parts.push(`<g class="point" data-n="${r.n}"><path d="M${x - 3},${f.m.t + 2}l6,6m0,-6l-6,6" stroke="var(--fail)" stroke-width="1.5"/>${title}</g>`);
      continue;
    }
    const y = f.sy(Math.min(r.val_bpb, hi));
    const cls = r.kind === "baseline" ? "base" : r.outcome === "keep" ? "keep" : r.outcome === "stopped_early" ? "early" : "discard";
    const radius = cls === "keep" || cls === "base" ? 6 : 3.5;
    f.parts.push(`<circle class="point" data-n="${r.n}" cx="${x}" cy="${y}" r="${radius}" fill="var(--${cls})" stroke="white">${title}</circle>`);
  }
  return svg(960, 300, f.parts);
}

function memoryChart(points) {
  if (!points.length) return `<p class="muted">no experiment has been scheduled yet</p>`;
  const maxN = Math.max(...points.map((p) => p.n)), top = Math.max(...points.map((p) => p.capacity_mib));
  const f = frame(960, 220, [-0.5, maxN + 0.5], [0, top * 1.05], true, "experiment", "MiB");
  const w = Math.max(2, (f.sx(1) - f.sx(0)) * 0.7);
  for (const p of points) {
    const trainer = p.trainer_mib || 0, beside = p.plan.plan === "evict" ? 0 : p.agent_mib;
    const x = f.sx(p.n) - w / 2;
    const what = p.plan.plan === "evict" ? `agent evicted (moved in ${num(p.move_seconds, 1)}s, back in ${num(p.reload_seconds, 1)}s)`
      : p.plan.plan === "partial_offload" ? `agent partly offloaded (${p.plan.gpu_layers} layers on the device)` : "agent resident";
    const title = `<title>${label(p.n)}: trainer ${num(trainer, 0)} MiB, ${what}, capacity ${num(p.capacity_mib, 0)} MiB (${esc(p.device)})</title>`;
    f.parts.push(`<g class="mem" data-n="${p.n}"><rect x="${x}" y="${f.sy(trainer)}" width="${w}" height="${f.sy(0) - f.sy(trainer)}" fill="var(--base)"/>` +
      `<rect x="${x}" y="${f.sy(trainer + beside)}" width="${w}" height="${f.sy(trainer) - f.sy(trainer + beside)}" fill="var(--early)"/>` +
      (p.plan.plan === "evict" ? `<text x="${x + w / 2}" y="${f.sy(trainer) - 4}" text-anchor="middle">E</text>` : "") + `${title}</g>`);
  }
  const d = points.map((p, i) => `${i ? "L" : "M"}${f.sx(p.n) - w / 2},${f.sy(p.capacity_mib)}h${w}`).join("");
  f.parts.push(`<path d="${d}" fill="none" stroke="var(--fail)" stroke-dasharray="4 3"/>`);
  f.parts.push(`<text x="${960 - 290}" y="16" style="fill:var(--base)">■ trainer</text><text x="${960 - 230}" y="16" style="fill:var(--early)">■ agent beside it</text><text x="${960 - 120}" y="16" style="fill:var(--fail)">- - capacity</text>`);
  return svg(960, 220, f.parts);
}

// ---------------------------------------------------------------- page parts
function renderStatus() {
  const live = state.live, el = $("status");
  if (INLINE) {
    el.textContent = "report written " + INLINE.written;
  } else if (live && live.alive) {
    el.textContent = `live: ${label(live.n ?? 0)} ${live.phase}`;
  } else {
    el.textContent = live ? `not running (last: ${live.phase})` : "not running";
  }
  el.className = "status" + (live && live.alive && !INLINE ? " live" : "");
}

function renderSummary() {
  const o = state.overview, h = o.header;
  let elapsed = h.elapsed_seconds;
  if (state.live && state.live.alive && h.started) elapsed = (Date.now() - Date.parse(h.started)) / 1000;
  const best = h.best == null ? "–" : `${num(h.best, 6)} <small>(${label(h.best_n)})</small>`;
  const gain = h.improvement == null ? "–" : `${signed(-h.improvement, 6)} <small>(${signed(-h.improvement_percent, 2)} %, noise margin ${num(h.margin, 4)})</small>`;
  const confirmed = h.confirmation == null ? "not run (<code>autoresearch confirm</code>)" : `${h.confirmed ? "yes" : "no"}: ${esc(h.confirmation)}`;
  const cells = [
    ["agent model", esc(h.model || "unknown")], ["device", esc(h.device || "–")], ["profile", esc(h.profile || "–")],
    ["budget", h.budget_seconds == null ? "–" : duration(h.budget_seconds) + " per run"], ["elapsed", `<span id="elapsed">${duration(elapsed)}</span>`],
    ["experiments", `<span id="count">${h.experiments}</span>`], ["kept", `${h.kept} (${num(100 * h.keep_rate, 0)} %)`],
    ["baseline val_bpb", num(h.baseline, 6)], ["best val_bpb", best],
  ];
  $("summary").innerHTML = cells.map(([k, v]) => `<div><b>${k}</b><span>${v}</span></div>`).join("") +
    `<div class="wide"><b>against the baseline</b><span>${gain}</span></div>` +
    `<div class="wide"><b>confirmed</b><span id="confirmed">${confirmed}</span></div>`;
}

function renderFlight() {
  const o = state.overview, live = state.live, el = $("flight");
  if (INLINE || !live || !live.alive) {
    el.innerHTML = `<p class="muted">${INLINE ? "a report: nothing in flight" : "the loop is not running"}${live && !INLINE ? `; its last phase was ${esc(live.phase)} at ${esc(live.since)}` : ""}</p>`;
    return;
  }
  const pending = o.in_flight && o.in_flight.n === live.n ? o.in_flight : null;
  const what = pending ? esc(pending.idea || pending.description) : live.phase === "proposing" ? "the agent is writing a proposal" : "";
  const move = pending && pending.choice ? `${esc(pending.choice.move)}: ${esc(pending.choice.reason)}` : "";
  const series = [];
  if (o.best_curve.length) series.push({ points: o.best_curve, color: "var(--keep)", name: "the best file" });
  (pending ? pending.finished_runs : []).forEach((c, i) => series.push({ points: c, color: "var(--discard)", width: 1, name: `run ${i + 1}` }));
  if (live.curve.length) series.push({ points: live.curve, color: "var(--base)", width: 2, name: `run ${live.run_index || 1} (now)` });
  const step = live.step == null ? "" : `step ${live.step}, ${num(live.tokens_per_second, 0)} tokens/s, loss ${num(live.curve.length ? live.curve[live.curve.length - 1][1] : null, 4)}`;
  el.innerHTML = `<div class="flight"><div>
      <dl><dt>experiment</dt><dd>${label(live.n ?? 0)}${live.run_index ? `, run ${live.run_index}` : ""}</dd>
      <dt>phase</dt><dd id="phase">${esc(live.phase)}</dd><dt>since</dt><dd>${esc(live.since)}</dd>
      <dt>idea</dt><dd id="flight-idea">${what || "–"}</dd><dt>move</dt><dd>${move || "–"}</dd></dl>
      <div class="bar"><div style="width:${(100 * Math.min(1, live.progress || 0)).toFixed(1)}%"></div></div>
      <div id="flight-step" class="muted">${num(100 * (live.progress || 0), 1)} % of the budget ${step ? "· " + step : ""}</div></div>
    <div class="chart">${curveChart(series)}</div></div>`;
}

const sortKeys = {
  move: (r) => (r.choice ? r.choice.move : ""),
  outcome: (r) => status(r.outcome, r.kind),
};
function renderTable() {
  const { key, dir } = state.sort;
  const get = sortKeys[key] || ((r) => r[key]);
  const rows = [...state.overview.rows].sort((a, b) => {
    const x = get(a), y = get(b);
    if (x == null && y == null) return a.n - b.n;
    if (x == null) return 1;
    if (y == null) return -1;
    return (x < y ? -1 : x > y ? 1 : a.n - b.n) * dir;
  });
  for (const th of document.querySelectorAll("#experiments th")) {
    th.classList.toggle("sorted", th.dataset.key === key);
    th.classList.toggle("down", th.dataset.key === key && dir < 0);
  }
  $("experiments").tBodies[0].innerHTML = rows.map((r) => {
    const st = status(r.outcome, r.kind);
    const delta = r.delta == null ? "–" : `<span class="${r.delta < 0 ? "better" : "worse"}">${signed(r.delta, 4)}</span>`;
    return `<tr data-n="${r.n}" class="${r.n === state.selected ? "selected" : ""}"><td>${label(r.n)}</td><td><span class="badge ${st}">${st}</span></td>` +
      `<td class="num">${num(r.val_bpb, 6)}</td><td class="num">${delta}</td><td>${esc(r.choice ? r.choice.move : "")}</td>` +
      `<td title="${esc(r.idea || "")}">${esc(r.description)}</td><td class="num">${num(r.agent_seconds, 1)}</td><td class="num">${num(r.build_seconds, 1)}</td>` +
      `<td class="num">${num(r.training_seconds, 1)}</td><td class="num">${num(r.total_seconds, 1)}</td></tr>`;
  }).join("");
}

function diffHtml(diff) {
  return diff.split("\n").map((line) => {
    const cls = line.startsWith("+++") || line.startsWith("---") ? "" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "";
    return cls ? `<span class="${cls}">${esc(line)}</span>` : esc(line) + "\n";
  }).join("");
}

function renderDetail() {
  const el = $("detail"), d = state.detail;
  if (!d) { el.hidden = true; return; }
  el.hidden = false;
  if (d.error) { el.innerHTML = `<h2>${label(state.selected)}</h2><p class="problem">${esc(d.error)}</p>`; return; }
  const r = d.record, st = status(r.outcome, r.kind);
  const series = [];
  if (d.best_curve.length) series.push({ points: d.best_curve, color: "var(--keep)", name: `the best then (${label(d.best_n)})` });
  r.runs.forEach((run, i) => {
    // A run of the best file made beside the candidate (paired judging) is drawn as the best's.
    const reference = run.commit && run.commit !== r.commit && r.kind === "experiment";
    series.push(reference
      ? { points: run.curve, color: "var(--keep)", width: 1, name: `run ${i + 1}: the best, beside it` }
      : { points: run.curve, color: i ? "var(--early)" : "var(--base)", width: 2, name: `run ${i + 1}` });
  });
  const dec = r.decision;
  const decision = dec ? `${esc(dec.rule)}<br>best before ${num(dec.best_before, 6)}, this ${num(dec.candidate, 6)}, improvement ${signed(dec.improvement, 6)}, margin ${num(dec.margin, 6)}` : "–";
  const schedule = r.schedule ? `${esc(r.schedule.decision.plan.plan)}: ${esc(r.schedule.decision.reason)}` : "–";
  el.innerHTML = `<h2>${label(r.n)} <span class="badge ${st}">${st}</span> ${esc(r.description)}</h2>
    <div class="detail-grid"><div>
      <dl><dt>idea</dt><dd>${esc(r.idea || "–")}</dd><dt>move</dt><dd>${r.choice ? `${esc(r.choice.move)}${r.choice.category ? " (" + esc(r.choice.category) + ")" : ""}: ${esc(r.choice.reason)}` : "–"}</dd>
      <dt>val_bpb</dt><dd>${num(r.val_bpb, 6)} over ${r.runs.filter((run) => !run.commit || run.commit === r.commit).length} run(s) of its own</dd>
      <dt>noise floor</dt><dd class="decision">${decision}</dd><dt>scheduler</dt><dd>${schedule}</dd>
      <dt>seconds</dt><dd>agent ${num(r.timing.agent_seconds, 1)}, build ${num(r.timing.build_seconds, 1)}, training ${num(r.timing.training_seconds, 1)}, total ${num(r.timing.total_seconds, 1)}</dd>
      ${r.commit ? `<dt>commit</dt><dd><code>${esc(r.commit.slice(0, 12))}</code></dd>` : ""}</dl>
      ${r.error ? `<h3>error</h3><pre>${esc(r.error)}</pre>` : ""}
      <h3>diff</h3>${r.diff ? `<pre class="diff">${diffHtml(r.diff)}</pre>` : `<p class="muted">no diff (the unchanged file)</p>`}
    </div><div><div class="chart">${curveChart(series, 260)}</div>
      <h3>log tail</h3><pre class="log">${esc(r.log_tail.join("\n")) || "–"}</pre></div></div>`;
}

function render() {
  if (!state.overview) return;
  renderStatus();
  renderSummary();
  $("progress").innerHTML = progressChart(state.overview.rows);
  renderFlight();
  renderTable();
  $("memory").innerHTML = memoryChart(state.overview.memory);
}

// ---------------------------------------------------------------- interaction
async function open(n) {
  state.selected = n;
  if (INLINE) {
    state.detail = INLINE.details[n] || { error: `no experiment ${label(n)} in this report` };
  } else {
    try {
      const answer = await fetch(`api/experiments/${n}`);
      state.detail = answer.ok ? await answer.json() : { error: await answer.text() };
    } catch (e) {
      state.detail = { error: "the dashboard cannot be reached: " + e };
    }
  }
  renderTable();
  renderDetail();
}

document.addEventListener("click", (event) => {
  const th = event.target.closest("#experiments th");
  if (th) {
    const key = th.dataset.key;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    renderTable();
    return;
  }
  const row = event.target.closest("#experiments tbody tr, .point");
  if (row) open(Number(row.dataset.n));
});

function problem(text) {
  $("problem").hidden = !text;
  $("problem").textContent = text || "";
}

if (INLINE) {
  state.overview = INLINE.overview;
  state.live = null;
  render();
} else {
  const events = new EventSource("api/events");
  events.addEventListener("overview", (e) => {
    state.overview = JSON.parse(e.data);
    state.live = state.overview.live;
    problem(null);
    render();
  });
  events.addEventListener("live", (e) => {
    state.live = JSON.parse(e.data);
    if (state.overview) { renderStatus(); renderFlight(); }
  });
  events.addEventListener("problem", (e) => problem(e.data));
  events.onerror = () => problem("the dashboard cannot be reached: retrying");
  events.onopen = () => problem(null);
  setInterval(() => {
    const h = state.overview && state.overview.header, el = $("elapsed");
    if (el && h && h.started && state.live && state.live.alive) el.textContent = duration((Date.now() - Date.parse(h.started)) / 1000);
  }, 1000);
}
