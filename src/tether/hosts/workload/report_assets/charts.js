/* tether bench report, the chart kit: DOM helpers, number formats, scales, and SVG
   line and step charts with hover read-outs and legends. Written for tether; it loads
   nothing. The page's own script (report.js) draws the report with it. */
"use strict";
const TetherCharts = (() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const SPARSE = 40; // lines of at most this many points show each point
  const redraws = []; // every chart's draw(), run again when the window is resized

  // ------------------------------------------------------------------ DOM

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child);
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, String(value));
    }
    return node;
  }

  // ------------------------------------------------------------------ numbers

  function fmtInt(n) {
    return Math.round(n).toLocaleString("en-US");
  }

  function fmtTps(n) {
    if (n === null || n === undefined) return "-";
    if (n >= 100) return fmtInt(n);
    return n.toLocaleString("en-US", { maximumFractionDigits: n >= 10 ? 1 : 2 });
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "-";
    if (ms >= 1000) return (ms / 1000).toLocaleString("en-US", { maximumFractionDigits: 2 }) + " s";
    if (ms >= 100) return Math.round(ms) + " ms";
    if (ms >= 10) return ms.toFixed(1) + " ms";
    if (ms >= 1) return ms.toFixed(2) + " ms";
    return ms.toFixed(3) + " ms";
  }

  function fmtMsShort(ms) {
    if (ms === 0) return "0";
    if (ms >= 1000) return +(ms / 1000).toPrecision(3) + "s";
    if (ms >= 1) return +ms.toPrecision(3) + "ms";
    return +(ms * 1000).toPrecision(3) + "µs";
  }

  function fmtPct(fraction) {
    if (fraction === 0) return "0%";
    const pct = fraction * 100;
    return (pct >= 10 ? pct.toFixed(1) : pct >= 0.1 ? pct.toFixed(2) : pct.toPrecision(2)) + "%";
  }

  function fmtTime(s) {
    return s < 120 ? +s.toFixed(2) + "s" : fmtClock(s);
  }

  /* m:ss, or h:mm:ss from an hour on. */
  function fmtClock(s) {
    const whole = Math.round(s);
    const [h, m, rest] = [Math.floor(whole / 3600), Math.floor(whole / 60) % 60, whole % 60];
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? `${h}:` : "") + `${mm}:${String(rest).padStart(2, "0")}`;
  }

  function fmtCompact(n) {
    const a = Math.abs(n);
    if (a >= 1e6) return +(n / 1e6).toPrecision(3) + "M";
    if (a >= 1e4) return +(n / 1e3).toPrecision(3) + "k";
    return +n.toPrecision(4) + "";
  }

  function fmtDate(iso) {
    const date = new Date(iso);
    if (isNaN(date)) return iso || "-";
    return date.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  // ------------------------------------------------------------------ scales

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const unit = raw / power;
    const nice = unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 2.5 ? 2.5 : unit <= 5 ? 5 : 10;
    return nice * power;
  }

  /* steps: the tick spacings to choose from (e.g. whole minutes for time), else 1-2-5. */
  function linearScale(d0, d1, r0, r1, steps) {
    const span = d1 - d0 || 1;
    const scale = (v) => r0 + ((v - d0) / span) * (r1 - r0);
    scale.invert = (p) => d0 + ((p - r0) / (r1 - r0)) * span;
    scale.ticks = (count) => {
      const wanted = span / Math.max(1, count);
      const step = (steps && steps.find((s) => s >= wanted)) || niceStep(span, count);
      const ticks = [];
      for (let t = Math.ceil(d0 / step) * step; t <= d1 + step * 1e-9; t += step) {
        ticks.push(+t.toPrecision(12));
      }
      return ticks;
    };
    return scale;
  }

  function logScale(d0, d1, r0, r1) {
    const l0 = Math.log10(d0);
    const span = Math.log10(d1) - l0 || 1;
    const scale = (v) => r0 + ((Math.log10(Math.max(v, d0 / 10)) - l0) / span) * (r1 - r0);
    scale.invert = (p) => Math.pow(10, l0 + ((p - r0) / (r1 - r0)) * span);
    scale.ticks = () => {
      const steps = span <= 1.3 ? [1, 2, 3, 5, 7] : span <= 3.2 ? [1, 2, 5] : [1];
      const ticks = [];
      for (let e = Math.floor(l0); e <= Math.ceil(l0 + span); e += 1) {
        for (const s of steps) {
          const t = s * Math.pow(10, e);
          if (t >= d0 * 0.999 && t <= d1 * 1.001) ticks.push(t);
        }
      }
      return ticks;
    };
    return scale;
  }

  function makeScale(axis, r0, r1) {
    const [d0, d1] = axis.domain;
    return axis.log ? logScale(d0, d1, r0, r1) : linearScale(d0, d1, r0, r1, axis.steps);
  }

  // ------------------------------------------------------------------ charts

  /* A chart: spec.layers are lines ({kind: "line", points: [[x, y|null]]}) or step
     areas ({kind: "steps", points: [[x0, x1, y, base]]}); each has name, group, color,
     dash, width, fill. spec.x and spec.y: {domain, log, format, title}. spec.hidden:
     the legend groups switched off. spec.markers: vertical lines {x, color, label}. */
  function drawChart(host, spec) {
    host.textContent = "";
    const width = Math.max(300, Math.floor(host.getBoundingClientRect().width) || 900);
    const height = spec.height || 240;
    const margin = { top: 16, right: 16, bottom: 30, left: 62 };
    const plotW = width - margin.left - margin.right;
    const plotH = height - margin.top - margin.bottom;
    const layers = spec.layers.filter((layer) => !spec.hidden.has(layer.group));
    const sx = makeScale(spec.x, margin.left, margin.left + plotW);
    const sy = makeScale(spec.y(layers), margin.top + plotH, margin.top);
    const yAxis = spec.y(layers);
    const root = svg("svg", {
      width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": spec.label, "data-chart": spec.id,
    });
    for (const t of sy.ticks(5)) {
      const y = Math.round(sy(t)) + 0.5;
      root.append(svg("line", { class: "gridline", x1: margin.left, x2: margin.left + plotW,
        y1: y, y2: y }));
      root.append(svg("text", { x: margin.left - 8, y: y + 3.5, "text-anchor": "end",
        text: yAxis.format(t) }));
    }
    for (const t of sx.ticks(Math.max(3, Math.floor(plotW / 90)))) {
      const x = Math.round(sx(t)) + 0.5;
      root.append(svg("line", { class: "gridline", x1: x, x2: x, y1: margin.top,
        y2: margin.top + plotH }));
      root.append(svg("text", { x, y: margin.top + plotH + 18, "text-anchor": "middle",
        text: spec.x.format(t) }));
    }
    root.append(svg("line", { class: "baseline", x1: margin.left, x2: margin.left + plotW,
      y1: margin.top + plotH + 0.5, y2: margin.top + plotH + 0.5 }));
    if (yAxis.title) {
      root.append(svg("text", { class: "axis-title", x: margin.left - 8, y: margin.top - 5,
        "text-anchor": "end", text: yAxis.title }));
    }
    const clip = `clip-${spec.id}`;
    const defs = svg("defs");
    const clipPath = svg("clipPath", { id: clip });
    clipPath.append(svg("rect", { x: margin.left - 4, y: margin.top - 6, width: plotW + 8,
      height: plotH + 6 }));
    defs.append(clipPath);
    root.append(defs);
    const plot = svg("g", { "clip-path": `url(#${clip})` });
    const bottom = margin.top + plotH;
    for (const layer of layers) {  // areas first, so that no line is under another's fill
      if (layer.fill && layer.kind === "line") plot.append(areaUnder(layer, sx, sy, plotH, margin));
      if (layer.kind === "steps" && layer.outline) {
        plot.append(svg("path", { class: "area", d: pathOf(layer, sx, sy, bottom),
          fill: layer.color, "fill-opacity": layer.opacity ?? 0.3, stroke: "none" }));
      }
    }
    for (const layer of layers) {
      const filled = layer.kind === "steps" && !layer.outline;
      plot.append(svg("path", {
        class: "series", d: pathOf(layer, sx, sy, bottom),
        fill: filled ? layer.color : "none",
        "fill-opacity": filled ? (layer.opacity ?? 0.75) : null,
        stroke: filled ? "none" : layer.color,
        "stroke-width": layer.width || 1.7, "stroke-dasharray": layer.dash || null,
        "stroke-linejoin": "round", "stroke-linecap": "round",
        "data-series": layer.name, "data-group": layer.group,
        "data-points": layer.points.length,
      }));
      if (layer.kind === "line" && layer.points.length <= SPARSE) plot.append(dotsOf(layer, sx, sy));
    }
    root.append(plot);
    for (const marker of spec.markers || []) {
      if (spec.hidden.has(marker.group)) continue;
      const x = sx(marker.x);
      if (!(x >= margin.left && x <= margin.left + plotW)) continue;
      root.append(svg("line", { class: "marker", x1: x, x2: x, y1: margin.top,
        y2: margin.top + plotH, stroke: marker.color }));
      root.append(svg("text", { class: "marker-label", x: x + 4,
        y: margin.top + 10 + (marker.row || 0) * 13, fill: marker.color, text: marker.label }));
    }
    if (spec.empty) {
      root.append(svg("text", { class: "empty", x: margin.left + plotW / 2,
        y: margin.top + plotH / 2, "text-anchor": "middle", text: spec.empty }));
    }
    host.append(root);
    hover(host, root, spec, layers, sx, { margin, plotW, plotH });
  }

  function pathOf(layer, sx, sy, bottom) {
    if (layer.kind === "steps") return stepsPath(layer.points, sx, sy, bottom);
    const parts = [];
    let pen = "M";
    for (const [x, y] of layer.points) {
      if (y === null || y === undefined) {
        pen = "M";
        continue;
      }
      parts.push(`${pen}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
      pen = "L";
    }
    return parts.join("") || "M0,0";
  }

  /* Intervals [x0, x1, y, base] as filled steps: one closed shape per run of
     touching intervals, its top edge left to right, its base right to left. */
  function stepsPath(points, sx, sy, bottom) {
    const at = (x, y) => `${sx(x).toFixed(1)},${y.toFixed(1)}`;
    const shapes = [];
    let top = [];
    let base = [];
    const flush = () => {
      if (top.length) shapes.push(`M${top.join("L")}L${base.reverse().join("L")}Z`);
      top = [];
      base = [];
    };
    let last = null;
    for (const [x0, x1, y, under] of points) {
      if (last !== null && Math.abs(last - x0) > 1e-9) flush();
      const floor = under ? sy(under) : bottom;
      top.push(at(x0, sy((under || 0) + y)), at(x1, sy((under || 0) + y)));
      base.push(at(x0, floor), at(x1, floor));
      last = x1;
    }
    flush();
    return shapes.join("") || "M0,0";
  }

  /* Few points: each one marked, so that a short run reads as points, not a trend. */
  function dotsOf(layer, sx, sy) {
    const group = svg("g", { class: "dots" });
    for (const [x, y] of layer.points) {
      if (y === null || y === undefined) continue;
      group.append(svg("circle", { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 2.6,
        fill: "#fff", stroke: layer.color, "stroke-width": 1.5 }));
    }
    return group;
  }

  function areaUnder(layer, sx, sy, plotH, margin) {
    const bottom = margin.top + plotH;
    const points = layer.points.filter(([, y]) => y !== null && y !== undefined);
    if (!points.length) return svg("g");
    const line = points.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    const last = points[points.length - 1][0];
    const d = line.join("") + `L${sx(last).toFixed(1)},${bottom}L${sx(points[0][0]).toFixed(1)},${bottom}Z`;
    return svg("path", { d, fill: layer.color, "fill-opacity": 0.09, stroke: "none",
      class: "area" });
  }

  /* The point nearest x (lines), or the interval holding it (steps). */
  function nearest(points, x) {
    const steps = points.length && points[0].length > 2;
    const key = (p) => (steps ? p[1] : p[0]);
    let lo = 0;
    let hi = points.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (key(points[mid]) < x) lo = mid + 1;
      else hi = mid;
    }
    if (!steps && lo > 0 && x - points[lo - 1][0] < points[lo][0] - x) return lo - 1;
    return lo;
  }

  function hover(host, root, spec, layers, sx, box) {
    if (!spec.tooltip) return;
    const { margin, plotW, plotH } = box;
    const line = svg("line", { class: "crosshair", y1: margin.top, y2: margin.top + plotH,
      visibility: "hidden" });
    root.append(line);
    const dots = svg("g");
    root.append(dots);
    const tip = el("div", { class: "tooltip", style: "display:none" });
    host.append(tip);
    const zone = svg("rect", { x: margin.left, y: margin.top, width: plotW, height: plotH,
      fill: "transparent" });
    root.append(zone);
    zone.addEventListener("mouseleave", () => {
      tip.style.display = "none";
      line.setAttribute("visibility", "hidden");
      dots.textContent = "";
    });
    zone.addEventListener("mousemove", (event) => {
      const bounds = root.getBoundingClientRect();
      const px = event.clientX - bounds.left;
      const x = sx.invert(px);
      const rows = spec.tooltip(layers, x);
      if (!rows) return;
      line.setAttribute("x1", px);
      line.setAttribute("x2", px);
      line.setAttribute("visibility", "visible");
      tip.textContent = "";
      tip.append(el("div", { class: "time", text: rows.title }));
      for (const row of rows.rows) {
        tip.append(el("div", { class: "row" },
          el("span", { class: "dot", style: `background:${row.color}` }),
          el("span", { text: row.name }), el("b", { text: row.value })));
      }
      tip.style.display = "block";
      const left = px + 14 + tip.offsetWidth > bounds.width ? px - 14 - tip.offsetWidth : px + 14;
      tip.style.left = `${left}px`;
      tip.style.top = `${margin.top + 4}px`;
    });
  }

  /* A chart in a panel with a legend whose entries switch their group on and off. */
  function chartPanel(parent, { id, title, description, legend, build }) {
    const legendBox = el("div", { class: "legend" });
    const host = el("div", { class: "chart", id: `chart-${id}` });
    const panel = el("section", { class: "panel", id: `panel-${id}` },
      el("div", { class: "panel-head" },
        el("div", {}, el("h2", { text: title }), description ? el("p", { text: description }) : null),
        legendBox),
      host);
    parent.append(panel);
    const hidden = new Set();
    const draw = () => drawChart(host, { ...build(), id, hidden });
    for (const entry of legend) {
      const button = el("button", { type: "button", "data-legend": entry.name,
        title: "show or hide" });
      button.append(legendMark(entry), entry.name);
      button.addEventListener("click", () => {
        if (hidden.has(entry.name)) hidden.delete(entry.name);
        else hidden.add(entry.name);
        button.classList.toggle("off", hidden.has(entry.name));
        draw();
      });
      legendBox.append(button);
    }
    redraws.push(draw);
    return { host, panel, draw };
  }

  function legendMark(entry) {
    const mark = svg("svg", { width: 18, height: 10, viewBox: "0 0 18 10" });
    if (entry.box) {
      mark.append(svg("rect", { x: 3, y: 1, width: 12, height: 8, rx: 2, fill: entry.color }));
    } else {
      mark.append(svg("line", { x1: 1, x2: 17, y1: 5, y2: 5, stroke: entry.color,
        "stroke-width": entry.width || 2.2, "stroke-dasharray": entry.dash || null,
        "stroke-linecap": "round" }));
    }
    return mark;
  }

  return {
    el, svg, fmtInt, fmtTps, fmtMs, fmtMsShort, fmtPct, fmtTime, fmtClock, fmtCompact, fmtDate,
    drawChart, chartPanel, legendMark, nearest, redraws,
  };
})();
