/* tether bench report: draws the page, as SVG and tables, from the figures in
   #tether-report-data (the JSON report of one run, or of two compared), with the
   chart kit of charts.js. Text from the run is always set as text, never as markup. */
"use strict";
(() => {
  const {
    el, svg, fmtInt, fmtTps, fmtMs, fmtMsShort, fmtPct, fmtTime, fmtClock, fmtCompact, fmtDate,
    drawChart, chartPanel, legendMark, nearest, redraws,
  } = TetherCharts;
  const PALETTE = ["#3b6fd8", "#e07b39", "#2e9e6a", "#c8455a", "#8a5cc7", "#b08a2e",
    "#2a9bb5", "#d35fb7", "#6b7a3a", "#7d8696"];
  const RUN_COLORS = ["#3b6fd8", "#e07b39"];
  const TOTAL_COLOR = "#1d2433";
  const data = JSON.parse(document.getElementById("tether-report-data").textContent);
  const runs = data.runs;
  const comparing = runs.length > 1;
  const page = document.getElementById("report");

  // ------------------------------------------------------------------ series

  /* Per point: its middle, its length, and rate / percentile columns. */
  function timeline(series) {
    const mids = [];
    const spans = [];
    let start = 0;
    for (const end of series.time) {
      mids.push((start + end) / 2);
      spans.push(Math.max(end - start, 1e-9));
      start = end;
    }
    return { mids, spans, starts: series.time.map((end, i) => end - spans[i]), ends: series.time };
  }

  function rate(values, spans) {
    return values.map((n, i) => n / spans[i]);
  }

  function extent(layers, pick) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const layer of layers) {
      for (const point of layer.points) {
        const v = pick(point);
        if (v === null || v === undefined || !isFinite(v)) continue;
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
    return [lo, hi];
  }

  function countAxis(title, format) {
    return (layers) => {
      const [, hi] = extent(layers, (p) => (p.length > 2 ? p[2] + (p[3] || 0) : p[1]));
      const top = hi > 0 && isFinite(hi) ? hi * 1.1 : 1;
      return { domain: [0, top], format, title };
    };
  }

  function latencyAxis(layers) {
    let [lo, hi] = extent(layers, (p) => (p[1] > 0 ? p[1] : null));
    if (!isFinite(lo)) [lo, hi] = [0.1, 10];
    if (hi / lo > 12) {
      return { domain: [lo / 1.25, hi * 1.25], log: true, format: fmtMsShort, title: "latency" };
    }
    return { domain: [0, hi * 1.12], format: fmtMsShort, title: "latency" };
  }

  const TIME_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  function timeAxis(maxTime) {
    // below two minutes 1-2-5 seconds; beyond, whole minutes and hours
    const long = maxTime > 120;
    return { domain: [0, Math.max(maxTime, 1e-3)], format: long ? fmtClock : fmtTime,
      steps: long ? TIME_STEPS : null };
  }

  function timeTooltip(format) {
    return (layers, x) => {
      const rows = [];
      for (const layer of layers) {
        if (!layer.points.length) continue;
        const i = nearest(layer.points, x);
        const point = layer.points[i];
        const value = layer.kind === "steps" ? point[2] : point[1];
        rows.push({ name: layer.name, color: layer.color, value: format(value) });
      }
      return { title: `at ${fmtTime(x)}`, rows };
    };
  }

  function runsWithSeries() {
    return runs.filter((run) => run.series && run.series.time.length);
  }

  function maxElapsed() {
    return Math.max(...runs.map((run) => (run.series && run.series.time.length
      ? run.series.time[run.series.time.length - 1] : run.totals.elapsed)));
  }

  function opColor(name) {
    const names = allOperations();
    return PALETTE[names.indexOf(name) % PALETTE.length];
  }

  function allOperations() {
    const names = [];
    for (const run of runs) {
      for (const op of run.operations) if (!names.includes(op.name)) names.push(op.name);
    }
    return names;
  }

  /* The operations with successes in the run's series, in weight order. */
  function succeeding(run) {
    return activeOperations(run).filter((name) => {
      const columns = run.series.operations[name];
      return columns && columns.successes.some((n) => n > 0);
    });
  }

  function activeOperations(run) {
    const inSeries = run.series ? run.series.names : [];
    return run.operations.filter((op) => op.count || op.errors || inSeries.includes(op.name))
      .map((op) => op.name);
  }

  // ------------------------------------------------------------------ time charts

  function throughputChart(parent) {
    const withSeries = runsWithSeries();
    const legend = [];
    const layers = [];
    for (const [index, run] of withSeries.entries()) {
      const t = timeline(run.series);
      const ops = succeeding(run);
      if (comparing) {
        const color = RUN_COLORS[index];
        layers.push(lineLayer(run.label, run.label, color, t.mids,
          rate(run.series.total.successes, t.spans), { width: 2.3, fill: true }));
        legend.push({ name: run.label, color });
        continue;
      }
      if (ops.length !== 1) {
        layers.push(lineLayer("all operations", "all operations", TOTAL_COLOR, t.mids,
          rate(run.series.total.successes, t.spans), { width: 2.4, fill: true }));
        legend.push({ name: "all operations", color: TOTAL_COLOR, width: 3 });
      }
      for (const name of ops) {
        const color = opColor(name);
        layers.push(lineLayer(name, name, color, t.mids,
          rate(run.series.operations[name].successes, t.spans), { fill: ops.length === 1 }));
        legend.push({ name, color });
      }
    }
    chartPanel(parent, {
      id: "throughput",
      title: "Throughput",
      description: comparing ? "Successful transactions per second, all operations, each run"
        : "Successful transactions per second, over the measured run",
      legend,
      build: () => ({
        label: "throughput over time", layers, height: 250,
        x: timeAxis(maxElapsed()), y: countAxis("tx/s", fmtCompact),
        tooltip: timeTooltip((v) => `${fmtTps(v)} tx/s`),
        markers: reloadMarkers(),
      }),
    });
  }

  function latencyChart(parent) {
    const legend = [];
    const layers = [];
    for (const [index, run] of runsWithSeries().entries()) {
      const t = timeline(run.series);
      const groups = comparing ? [[run.label, run.series.total, RUN_COLORS[index]]]
        : succeeding(run).map((name) => [name, run.series.operations[name], opColor(name)]);
      for (const [group, columns, color] of groups) {
        layers.push(lineLayer(`${group} p99`, group, color, t.mids, columns.p99_ms,
          { dash: "5 4", width: 1.6 }));
        layers.push(lineLayer(`${group} p50`, group, color, t.mids, columns.p50_ms,
          { width: 2 }));
        legend.push({ name: group, color });
      }
    }
    chartPanel(parent, {
      id: "latency",
      title: "Latency over time",
      description: "p50 (solid) and p99 (dashed) of the successful transactions of each point",
      legend,
      build: () => ({
        label: "p50 and p99 latency over time", layers, height: 250,
        x: timeAxis(maxElapsed()), y: latencyAxis,
        tooltip: timeTooltip(fmtMs),
        markers: reloadMarkers(),
      }),
    });
  }

  function errorsChart(parent) {
    const legend = [];
    const layers = [];
    let total = 0;
    for (const [index, run] of runsWithSeries().entries()) {
      const t = timeline(run.series);
      const groups = comparing ? [[run.label, run.series.total, RUN_COLORS[index]]]
        : activeOperations(run).filter((name) => run.series.operations[name])
          .map((name) => [name, run.series.operations[name], opColor(name)]);
      const base = t.mids.map(() => 0);
      for (const [group, columns, color] of groups) {
        const errors = columns.errors;
        const sum = errors.reduce((a, b) => a + b, 0);
        if (!sum) continue;
        total += sum;
        const perSecond = rate(errors, t.spans);
        layers.push({
          kind: "steps", name: group, group, color,
          points: perSecond.map((v, i) => [t.starts[i], t.ends[i], v, comparing ? 0 : base[i]]),
          opacity: comparing ? 0.45 : 0.8, outline: comparing, width: 1.4,
        });
        if (!comparing) perSecond.forEach((v, i) => { base[i] += v; });
        legend.push({ name: group, color, box: true });
      }
    }
    if (!total) {
      const t = runsWithSeries().length ? timeline(runsWithSeries()[0].series) : { mids: [] };
      layers.push(lineLayer("errors", "errors", "#98a2b3", t.mids, t.mids.map(() => 0),
        { width: 1.4 }));
    }
    chartPanel(parent, {
      id: "errors",
      title: "Errors over time",
      description: total ? `Failed transactions per second, ${comparing ? "each run" : "by operation"}`
        : "Failed transactions per second",
      legend,
      build: () => ({
        label: "errors over time", layers, height: 170,
        x: timeAxis(maxElapsed()), y: countAxis("errors/s", fmtCompact),
        empty: total ? null : "no errors", markers: reloadMarkers(),
        tooltip: total ? timeTooltip((v) => `${fmtTps(v)} errors/s`) : null,
      }),
    });
  }

  /* A vertical line per reload of the workload during the run (not when comparing):
     green when a version went live, red when one failed and was rolled back. */
  function reloadMarkers() {
    if (comparing) return [];
    return (runs[0].reloads || []).filter((r) => r.at_seconds >= 0).map((r, i) => ({
      x: r.at_seconds, row: i % 2, group: "",
      color: r.outcome === "reloaded" && !r.refused ? "#2e9e6a" : "#c8455a",
      label: r.outcome === "reloaded" && !r.refused ? `${r.to_version}`
        : `${r.to_version || "?"} rolled back`,
    }));
  }

  function lineLayer(name, group, color, xs, ys, options) {
    return { kind: "line", name, group, color, points: xs.map((x, i) => [x, ys[i]]),
      ...(options || {}) };
  }

  // ------------------------------------------------------------------ histograms

  function histograms(parent) {
    const names = allOperations().filter((name) => runs.some((run) => {
      const op = run.operations.find((o) => o.name === name);
      return op && op.count > 0;
    }));
    const grid = el("div", { class: "histograms" });
    const legend = comparing ? runs.map((run, i) => ({ name: run.label, color: RUN_COLORS[i],
      box: true })) : [];
    const panel = el("section", { class: "panel", id: "panel-histograms" },
      el("div", { class: "panel-head" },
        el("div", {}, el("h2", { text: "Latency distribution" }),
          el("p", { text: "Share of each operation's successful transactions by latency " +
            "(logarithmic bins), with its p50 and p99" })),
        el("div", { class: "legend" }, ...legend.map((entry) =>
          el("span", { class: "run-tag" }, legendMark(entry), entry.name)))),
      grid);
    parent.append(panel);
    if (!names.length) grid.append(el("p", { class: "note", text: "No successful transactions." }));
    for (const name of names) histogram(grid, name);
  }

  function histogram(grid, name) {
    const perDecade = data.binsPerDecade;
    const edge = (i) => Math.pow(10, i / perDecade) / 1000;
    const layers = [];
    const markers = [];
    let lo = Infinity;
    let hi = -Infinity;
    const summary = [];
    for (const [index, run] of runs.entries()) {
      const op = run.operations.find((o) => o.name === name);
      if (!op || !op.count || !op.bins.length) continue;
      const color = comparing ? RUN_COLORS[index] : opColor(name);
      const total = op.bins.reduce((sum, [, n]) => sum + n, 0);
      lo = Math.min(lo, op.bins[0][0]);
      hi = Math.max(hi, op.bins[op.bins.length - 1][0]);
      layers.push({
        kind: "steps", name: comparing ? run.label : name, group: comparing ? run.label : name,
        color, opacity: comparing ? 0.35 : 0.8, outline: comparing, width: 1.5,
        points: op.bins.map(([i, n]) => [edge(i), edge(i + 1), (100 * n) / total, 0]),
      });
      if (comparing) {
        markers.push({ x: op.latency.p50, color, label: `p50`, row: index, group: "" });
        markers.push({ x: op.latency.p99, color, label: `p99`, row: index, group: "" });
        summary.push(`${run.label}: ${fmtInt(op.count)} tx, p50 ${fmtMs(op.latency.p50)}, ` +
          `p99 ${fmtMs(op.latency.p99)}`);
      } else {
        markers.push({ x: op.latency.p50, color: "#475467",
          label: `p50 ${fmtMs(op.latency.p50)}`, row: 0, group: "" });
        markers.push({ x: op.latency.p99, color: "#c8455a",
          label: `p99 ${fmtMs(op.latency.p99)}`, row: 1, group: "" });
        summary.push(`${fmtInt(op.count)} transactions`);
      }
    }
    if (!layers.length) return;
    const id = `histogram-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const host = el("div", { class: "chart", id });
    grid.append(el("div", { class: "histogram", "data-operation": name },
      el("h3", { text: name }, el("span", { text: summary.join(" · ") })), host));
    const domain = [edge(lo - 1), edge(hi + 2)];
    const draw = () => drawChart(host, {
      id, label: `latency histogram of ${name}`,
      layers, markers, hidden: new Set(), height: 200,
      x: { domain, log: true, format: fmtMsShort },
      y: countAxis("% of tx", (v) => `${+v.toPrecision(3)}%`),
      tooltip: (visible, x) => ({
        title: `${fmtMs(x)}`,
        rows: visible.map((layer) => {
          const found = layer.points.find(([x0, x1]) => x >= x0 && x < x1);
          return { name: layer.name, color: layer.color,
            value: found ? `${found[2].toFixed(2)}% (${fmtMs(found[0])} - ${fmtMs(found[1])})` : "0%" };
        }),
      }),
    });
    redraws.push(draw);
  }

  // ------------------------------------------------------------------ header and cards

  function header() {
    const first = runs[0];
    const title = el("h1");
    runs.forEach((run, i) => {
      if (i) title.append(el("span", { class: "vs", text: "vs" }));
      const [name, ...version] = (factOf(run, "workload") || run.workload).split(" ");
      title.append(name, " ", el("span", { class: "version", text: version.join(" ") }));
    });
    const subtitle = el("div", { class: "subtitle" });
    if (!comparing) {
      for (const fact of ["started at", "driver", "event loop", "server", "database"]) {
        const value = factOf(first, fact);
        if (value && value !== "-") {
          subtitle.append(el("span", { text: fact === "started at" ? fmtDate(value)
            : fact === "server" ? `PostgreSQL ${value}` : value }));
        }
      }
    }
    const tags = el("div", { class: "runs" });
    if (comparing) {
      runs.forEach((run, i) => tags.append(el("span", { class: "run-tag", title: run.source },
        el("b", { text: run.label, style: `background:${RUN_COLORS[i]}` }),
        el("span", { class: "path", text: `${run.source} · ${fmtDate(factOf(run, "started at"))}` }))));
    }
    page.append(el("header", { class: "top" },
      el("div", {}, el("div", { class: "kicker",
        text: comparing ? "tether bench · comparison" : "tether bench report" }), title, subtitle),
      tags));
  }

  function factOf(run, name) {
    const found = run.facts.find(([key]) => key === name);
    return found ? found[1] : null;
  }

  function cards() {
    const box = el("section", { class: "cards", id: "cards" });
    const specs = [
      ["Throughput", (r) => r.totals.tps, (v) => [fmtTps(v), "tx/s"], "more"],
      ["Transactions", (r) => r.totals.transactions, (v) => [fmtInt(v), ""], "more"],
      ["p50 latency", (r) => r.totals.latency.p50, (v) => splitUnit(fmtMs(v)), "less"],
      ["p99 latency", (r) => r.totals.latency.p99, (v) => splitUnit(fmtMs(v)), "less"],
      ["Errors", (r) => r.totals.errors, (v) => [fmtInt(v), ""], "less"],
    ];
    for (const [label, pick, format, better] of specs) {
      const card = el("div", { class: "card", "data-card": label });
      card.append(el("div", { class: "label", text: label }));
      if (comparing) {
        const [a, b] = runs.map(pick);
        for (const [i, run] of runs.entries()) {
          const [value, unit] = format(pick(run));
          card.append(el("div", { class: "pair" },
            el("i", { text: run.label, style: `background:${RUN_COLORS[i]}` }),
            el("span", { text: value }), unit ? el("small", { text: unit }) : null));
        }
        card.append(el("div", { class: "sub" }, ratioBadge(a, b, better)));
      } else {
        const run = runs[0];
        const [value, unit] = format(pick(run));
        card.append(el("div", { class: "value" }, value, unit ? el("small", { text: unit }) : null));
        card.append(el("div", { class: "sub", text: cardNote(label, run) }));
        if (label === "Errors" && run.totals.errors) card.classList.add("bad");
      }
      box.append(card);
    }
    if (!comparing) {
      const run = runs[0];
      const card = el("div", { class: "card", "data-card": "Clients" },
        el("div", { class: "label", text: "Clients" }),
        el("div", { class: "value", text: factOf(run, "clients") || "-" }),
        el("div", { class: "sub", text: `${factOf(run, "processes") || 1} process(es), ` +
          `${factOf(run, "driver") || ""}` }));
      box.append(card);
    }
    page.append(box);
  }

  function splitUnit(text) {
    const at = text.lastIndexOf(" ");
    return at < 0 ? [text, ""] : [text.slice(0, at), text.slice(at + 1)];
  }

  function cardNote(label, run) {
    const t = run.totals;
    if (label === "Throughput") return `over ${fmtTime(t.elapsed)} measured`;
    if (label === "Transactions") return `successful; stopped by ${factOf(run, "stopped by")}`;
    if (label === "p50 latency") return `mean ${fmtMs(t.latency.mean)}`;
    if (label === "p99 latency") return `p99.9 ${fmtMs(t.latency["p99.9"])}, max ${fmtMs(t.latency.max)}`;
    if (label === "Errors") return `${fmtPct(t.errorRate)} of attempts`;
    return "";
  }

  /* B/A, green when B is better by more than 3%, red when worse. */
  function ratioBadge(a, b, better, { short = false } = {}) {
    const prefix = short ? "" : `${runs[1].label}/${runs[0].label} `;
    if (!a) return el("span", { class: "ratio", text: `${prefix}-` });
    const r = b / a;
    const good = better === "more" ? r > 1.03 : r < 0.97;
    const bad = better === "more" ? r < 0.97 : r > 1.03;
    return el("span", { class: `ratio${good ? " good" : bad ? " bad" : ""}`,
      text: `${prefix}${r.toFixed(2)}×`, "data-ratio": r.toFixed(4) });
  }

  // ------------------------------------------------------------------ tables

  function panel(id, title, description, ...content) {
    const node = el("section", { class: "panel", id: `panel-${id}` },
      el("div", { class: "panel-head" }, el("div", {}, el("h2", { text: title }),
        description ? el("p", { text: description }) : null)), ...content);
    page.append(node);
    return node;
  }

  function table(headers, rows, { id, textColumns = [] } = {}) {
    const head = el("tr", {}, ...headers.map((h, i) => el("th", { text: h,
      class: textColumns.includes(i) ? "text" : null })));
    const body = el("tbody", {}, ...rows);
    return el("div", { class: "scroll" }, el("table", { class: "figures", id },
      headers.some(Boolean) ? el("thead", {}, head) : null, body));
  }

  function cell(text, cls) {
    return el("td", { text, class: cls || null });
  }

  function nameCell(name, color) {
    return el("td", { class: "name" }, el("span", { class: "named" },
      el("span", { class: "swatch", style: `background:${color}` }), el("span", { text: name })));
  }

  function operationsTable() {
    const keys = ["p50", "p90", "p95", "p99", "p99.9", "max"];
    if (comparing) return comparedOperations();
    const run = runs[0];
    const rows = run.operations.filter((op) => op.weight || op.count || op.errors).map((op) =>
      el("tr", {}, nameCell(op.name, opColor(op.name)), cell(String(op.weight)),
        cell(fmtInt(op.count)), cell(fmtInt(op.errors), op.errors ? null : "zero"),
        cell(fmtTps(op.tps)), ...keys.map((k) => cell(op.count ? fmtMs(op.latency[k]) : "-"))));
    const t = run.totals;
    rows.push(el("tr", { class: "total" }, cell("total"), cell(""), cell(fmtInt(t.transactions)),
      cell(fmtInt(t.errors), t.errors ? null : "zero"), cell(fmtTps(t.tps)),
      ...keys.map((k) => cell(t.transactions ? fmtMs(t.latency[k]) : "-"))));
    panel("operations", "Operations", "Latency of successful transactions; throughput over the " +
      "measured time", table(["operation", "weight", "transactions", "errors", "tx/s", ...keys],
      rows, { id: "operations" }));
  }

  function comparedOperations() {
    const [a, b] = runs;
    const rows = [];
    const figures = (run, name) => (name === null ? { ...run.totals, count: run.totals.transactions }
      : run.operations.find((op) => op.name === name));
    for (const name of [null, ...allOperations()]) {
      const one = figures(a, name);
      const two = figures(b, name);
      if (name !== null && !((one && (one.count || one.errors)) || (two && (two.count || two.errors)))) {
        continue;
      }
      const row = el("tr", { class: name === null ? "total" : null },
        name === null ? cell("total") : nameCell(name, opColor(name)));
      for (const [key, better] of [["tps", "more"], ["p50", "less"], ["p99", "less"]]) {
        const va = one ? (key === "tps" ? one.tps : one.latency[key]) : null;
        const vb = two ? (key === "tps" ? two.tps : two.latency[key]) : null;
        const show = key === "tps" ? fmtTps : fmtMs;
        row.append(cell(va === null ? "-" : show(va)));
        row.append(el("td", {}, vb === null ? "-" : show(vb), " ",
          va && vb !== null ? ratioBadge(va, vb, better, { short: true }) : null));
      }
      row.append(cell(one ? fmtInt(one.errors) : "-"), cell(two ? fmtInt(two.errors) : "-"));
      rows.push(row);
    }
    const la = a.label;
    const lb = b.label;
    panel("operations", "Operations", `${lb} against ${la}: ratios are ${lb}/${la}, green when ` +
      `${lb} is better`, table(["operation", `tx/s ${la}`, `tx/s ${lb}`, `p50 ${la}`,
      `p50 ${lb}`, `p99 ${la}`, `p99 ${lb}`, `errors ${la}`, `errors ${lb}`], rows,
      { id: "operations" }));
  }

  /* Which version ran when, and each reload attempt (a run that reloaded its workload). */
  function reloadsTables() {
    const withReloads = runs.filter((run) => (run.reloads || []).length);
    if (!withReloads.length) return;
    const label = (run) => (comparing ? [cell(run.label)] : []);
    const phaseRows = withReloads.flatMap((run) => run.phases.map((phase, i) =>
      el("tr", { "data-phase": String(i + 1) }, ...label(run), cell(String(i + 1)),
        cell(String(phase.version), "text"), cell(fmtTime(phase.from_seconds)),
        cell(fmtTime(phase.to_seconds)), cell(fmtInt(phase.transactions)),
        cell(fmtInt(phase.errors), phase.errors ? null : "zero"), cell(fmtTps(phase.tps)))));
    const reloadRows = withReloads.flatMap((run) => run.reloads.map((r) => {
      const failed = r.outcome !== "reloaded" || r.refused;
      const outcome = r.refused ? "refused by the bench" : r.outcome.replace("_", " ");
      return el("tr", { "data-outcome": r.outcome, class: failed ? "differs" : null },
        ...label(run), cell(fmtTime(r.at_seconds)), cell(outcome, "text"),
        cell(`${r.from_version} → ${r.to_version || "?"}`, "text"), cell(r.step || "-", "text"),
        cell(fmtMs(1000 * r.duration_seconds)), cell(fmtInt(r.held)),
        cell(String(r.refused || r.error || ""), "message"));
    }));
    const offset = comparing ? 1 : 0;
    const head = comparing ? ["run"] : [];
    panel("phases", "Phases", "Which version of the workload ran when: a reload that put " +
      "another version live starts a phase",
      table([...head, "phase", "version", "from", "to", "transactions", "errors", "tx/s"],
        phaseRows, { id: "phases", textColumns: [1 + offset] }),
      el("h3", { class: "subhead", text: "Reloads" }),
      table([...head, "at", "outcome", "versions", "failed at", "took", "calls held", "error"],
        reloadRows, { id: "reloads", textColumns: [1 + offset, 2 + offset, 3 + offset,
          6 + offset] }));
  }

  function errorsTable() {
    const rows = [];
    for (const run of runs) {
      for (const error of run.errors) {
        rows.push(el("tr", {}, ...(comparing ? [cell(run.label)] : []), cell(fmtInt(error.count)),
          cell(String(error.type), "text"), cell(String(error.message), "message"),
          cell(String(error.operation), "text"), cell(fmtTime(Number(error.first_seconds) || 0))));
      }
    }
    if (!rows.length) return;
    const headers = [...(comparing ? ["run"] : []), "count", "type", "message", "first in", "first at"];
    const offset = comparing ? 1 : 0;
    panel("distinct-errors", "Distinct errors", "Each distinct error (type and message), the " +
      "earliest first, with the operation it first happened in",
      table(headers, rows, { id: "distinct-errors", textColumns: [1 + offset, 2 + offset,
        3 + offset] }));
  }

  function settingsTables() {
    const names = [];
    for (const run of runs) {
      for (const [name, , isSetting] of run.facts) {
        if (!names.some(([known]) => known === name)) names.push([name, isSetting]);
      }
    }
    const headers = ["", ...(comparing ? runs.map((run) => run.label) : [""])];
    const rows = (wanted) => names.filter(([, isSetting]) => isSetting === wanted).map(([name]) => {
      const values = runs.map((run) => factOf(run, name) ?? "-")
        .map((v) => (name === "started at" ? fmtDate(v) : v));
      const differs = comparing && wanted && values[0] !== values[1];
      return el("tr", { class: differs ? "differs" : null, "data-setting": name },
        cell(name, "text"), ...values.map((v) => cell(v, "text value")));
    });
    const left = el("div", {}, el("h3", { class: "subhead", text: "Settings" }),
      table(headers, rows(true), { id: "settings", textColumns: [0, 1, 2] }));
    const right = el("div", {}, el("h3", { class: "subhead", text: "The run" }),
      table(headers, rows(false), { id: "run", textColumns: [0, 1, 2] }));
    for (const [key, title] of [["info", "Workload info"], ["metrics", "Workload metrics"]]) {
      const entries = runs.flatMap((run) => Object.entries(run[key] || {})
        .map(([k, v]) => [comparing ? `${run.label}: ${k}` : k, v]));
      if (!entries.length) continue;
      right.append(el("h3", { text: title, class: "subhead" }),
        table(["", ""], entries.map(([k, v]) => el("tr", {}, cell(k, "text"),
          cell(typeof v === "string" ? v : JSON.stringify(v), "text value"))),
        { id: key, textColumns: [0, 1] }));
    }
    panel("settings", "Settings", comparing ? "Highlighted: what differs between the runs"
      : "What ran, where, and how", el("div", { class: "columns" }, left, right));
  }

  // ------------------------------------------------------------------ the page

  header();
  cards();
  if (runsWithSeries().length) {
    throughputChart(page);
    latencyChart(page);
    errorsChart(page);
  } else {
    panel("over-time", "Over time", null, el("p", { class: "note",
      text: "No series in this report (written before tether kept them): no charts over time." }));
  }
  histograms(page);
  operationsTable();
  reloadsTables();
  errorsTable();
  settingsTables();
  page.append(el("footer", { text: `Made by tether ${data.tether} · one self-contained file: ` +
    "it loads nothing and works offline" }));
  for (const draw of redraws) draw();
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => redraws.forEach((draw) => draw()), 120);
  });
  document.body.dataset.rendered = String(redraws.length);
})();
