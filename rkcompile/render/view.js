// rkcompile's interactive view: zoom/pan, expand/collapse, details, search and colour scale over inline SVGs.
(function () {
  "use strict";
  const facts = JSON.parse(document.getElementById("facts").textContent);
  const LEVELS = ["stage", "network", "block"];
  const UNITS = Object.keys(facts.units);
  const panes = {};
  const views = {};
  let level = facts.view.level;
  let metric = facts.view.color_by;
  let previous = [];

  // ------------------------------------------------------------ numbers
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]];
    for (const [u, s] of units) if (Math.abs(n) >= s) return (n / s).toFixed(2) + " " + u;
    return n + " B";
  }
  function scaled(n) {
    if (n === null || n === undefined) return "–";
    const units = ["", "K", "M", "G", "T"];
    let v = n, u = 0;
    while (Math.abs(v) >= 1000 && u < units.length - 1) { v /= 1000; u += 1; }
    if (u === 0) return String(n);
    return v.toFixed(Math.abs(v) < 10 ? 2 : Math.abs(v) < 100 ? 1 : 0) + units[u];
  }
  const METRICS = {
    inference: ["inference_peak", "inference peak", bytes], saved: ["saved_bytes", "saved for backward", bytes],
    training: ["training_peak", "training peak", bytes], flops: ["flops", "FLOPs", scaled],
  };
  function esc(s) {
    return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }

  // ------------------------------------------------------------ what an SVG element stands for
  function key(el) { return el.id.slice(el.id.indexOf("/") + 1); }
  function unitsOf(el) {
    const k = key(el);
    if (!k.startsWith("unit:")) return [];
    const [first, last] = k.slice(5).split("..");
    if (/^stage\d+$/.test(first)) return UNITS.filter((u) => u.startsWith(first + "."));
    if (last === undefined) return [first];
    return UNITS.slice(UNITS.indexOf(first), UNITS.indexOf(last) + 1);
  }
  function rowOf(el) {
    const k = key(el).slice(5).split("..");
    if (/^stage\d+$/.test(k[0])) return facts.stages[k[0].slice(5)];
    return facts.units[k[k.length - 1]];
  }
  function tagged(lvl) { return Array.from(panes[lvl].querySelectorAll("g[id*='/unit:'], g[id*='/eval:'], g[id*='/tableau:']")); }

  // ------------------------------------------------------------ view box: zoom, pan, fit, focus
  function setBox(lvl, box) { views[lvl].box = box; views[lvl].svg.setAttribute("viewBox", box.join(" ")); }
  function fit(lvl) { setBox(lvl, views[lvl].full.slice()); }
  function toSvg(svg, x, y) {
    const p = svg.createSVGPoint(); p.x = x; p.y = y;
    return p.matrixTransform(svg.getScreenCTM().inverse());
  }
  function focus(elements) {
    const svg = views[level].svg;
    const rects = elements.map((e) => e.getBoundingClientRect()).filter((r) => r.width || r.height);
    if (!rects.length) return;
    const a = toSvg(svg, Math.min(...rects.map((r) => r.left)), Math.min(...rects.map((r) => r.top)));
    const b = toSvg(svg, Math.max(...rects.map((r) => r.right)), Math.max(...rects.map((r) => r.bottom)));
    const pad = 30, w = Math.max(b.x - a.x, 200) + 2 * pad, h = Math.max(b.y - a.y, 150) + 2 * pad;
    setBox(level, [(a.x + b.x - w) / 2, (a.y + b.y - h) / 2, w, h]);
  }
  function installPanZoom() {
    const canvas = document.getElementById("canvas");
    canvas.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const svg = views[level].svg, [x, y, w, h] = views[level].box;
      const p = toSvg(svg, ev.clientX, ev.clientY), f = Math.exp(ev.deltaY * 0.0015);
      setBox(level, [p.x - (p.x - x) * f, p.y - (p.y - y) * f, w * f, h * f]);
    }, { passive: false });
    let drag = null;
    canvas.addEventListener("pointerdown", (ev) => {
      drag = { x: ev.clientX, y: ev.clientY, box: views[level].box.slice(), moved: false };
    });
    window.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; canvas.classList.add("dragging"); }
      if (!drag.moved) return;
      const s = 1 / views[level].svg.getScreenCTM().a;
      setBox(level, [drag.box[0] - dx * s, drag.box[1] - dy * s, drag.box[2], drag.box[3]]);
    });
    window.addEventListener("pointerup", () => {
      canvas.classList.remove("dragging");
      if (drag && drag.moved) canvas.dataset.justDragged = "1";
      drag = null;
    });
  }

  // ------------------------------------------------------------ levels: expand and collapse
  function go(lvl, focusUnits) {
    if (lvl !== level) previous.push(level);
    level = lvl;
    for (const l of LEVELS) panes[l].hidden = l !== lvl;
    document.body.dataset.level = lvl;
    document.querySelectorAll("[data-go]").forEach((b) => b.classList.toggle("active", b.dataset.go === lvl));
    if (focusUnits && focusUnits.length) {
      fit(lvl);
      const want = new Set(focusUnits);
      const els = tagged(lvl).filter((e) => unitsOf(e).some((u) => want.has(u)));
      if (els.length) focus(els);
    }
    search(document.getElementById("search").value);
  }
  function collapse() {
    const i = LEVELS.indexOf(level);
    if (i > 0) go(LEVELS[i - 1]);
  }
  function onClick(ev) {
    const canvas = document.getElementById("canvas");
    if (canvas.dataset.justDragged) { delete canvas.dataset.justDragged; return; }
    const el = ev.target.closest("g[id*='/unit:'], g[id*='/eval:'], g[id*='/tableau:']");
    if (!el) return;
    select(el);
    const k = key(el);
    if (level === "network" && !k.startsWith("unit:")) go("block", [k.split(":")[1]]);  // inside a block: open it
    if (k.startsWith("eval:")) {
      const [, label, index] = k.split(":");
      showEvaluation(label, Number(index));
    } else if (k.startsWith("tableau:")) {
      showUnit(k.slice(8));
    } else if (level === "stage") {
      go("network", unitsOf(el));
      showRow(k.slice(5), rowOf(el));
    } else if (level === "network" && facts.units[unitsOf(el)[0]].kind === "step") {
      const units = unitsOf(el);
      go("block", units.slice(0, 1));  // a run of ×N blocks of one structure: open its first
      showUnit(units[0], units.length);
    } else {
      showUnit(unitsOf(el)[0]);
    }
  }
  function select(el) {
    document.querySelectorAll("g.selected").forEach((e) => e.classList.remove("selected"));
    el.classList.add("selected");
  }

  // ------------------------------------------------------------ details panel
  function table(rows) {
    return "<table>" + rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td class="num">${esc(v)}</td></tr>`).join("") +
      "</table>";
  }
  function numbers(row) {
    return table([["parameters", row.parameters === null ? "–" : row.parameters.toLocaleString("en")],
      ["inference peak", bytes(row.inference_peak)], ["saved for backward", bytes(row.saved_bytes)],
      ["training peak", bytes(row.training_peak)], ["FLOPs", scaled(row.flops)]]);
  }
  function panel(html) { document.getElementById("details").innerHTML = html; }
  function showRow(title, row) { panel(`<h3>${esc(title)}</h3>` + (row ? numbers(row) : "")); }
  function showUnit(label, runLength) {
    const u = facts.units[label];
    let html = `<h3 data-unit="${esc(label)}">${esc(label)}</h3>` +
      (runLength > 1 ? `<p>first of ${runLength} blocks of one structure (its own numbers)</p>` : "") + numbers(u);
    if (u.evaluations.length) {
      html += "<h4>evaluations (click to expand into layers)</h4><ul>" + u.evaluations.map((e) =>
        `<li><a href="#" data-eval="${esc(label)}:${e.index}">k<sub>${e.index}</sub> = F[${esc(e.weights)}]` +
        `</a> at t = ${esc(e.time)}</li>`).join("") + "</ul>";
    } else {
      html += layers(u.nodes);
    }
    panel(html);
  }
  function showEvaluation(label, index) {
    const e = facts.units[label].evaluations.find((x) => x.index === index);
    panel(`<h3 data-eval="${esc(label)}:${index}">${esc(label)} · k<sub>${index}</sub></h3>` +
      `<p>F[${esc(e.weights)}] at t = ${esc(e.time)}</p>` + layers(e.nodes));
  }
  function layers(names) {
    return "<h4>layers</h4>" + names.filter((n) => facts.nodes[n]).map((n) => nodeTable(n)).join("");
  }
  function nodeTable(name) {
    const n = facts.nodes[name];
    return `<table class="layer" data-node="${esc(name)}"><tr><th colspan="2">${esc(name)} <small>(${esc(n.target)})</small></th></tr>` +
      [["shape", n.shape ? n.shape.join("×") : "–"], ["parameters", n.parameters.toLocaleString("en")],
        ["inference-live bytes", bytes(n.live_bytes)], ["saved for backward", bytes(n.saved_bytes)],
        ["FLOPs", scaled(n.flops)]].map(([k, v]) => `<tr><td>${k}</td><td class="num">${esc(v)}</td></tr>`).join("") +
      `<tr><td colspan="2"><code>${n.line ? "line " + n.line + ": " : ""}${esc(n.code)}</code></td></tr></table>`;
  }
  function showNode(name) {
    const n = facts.nodes[name];
    panel(`<h3>${esc(name)}</h3><p>in ${esc(n.unit || "–")}${n.eval ? ", k" + n.eval : ""}</p>` + nodeTable(name));
  }

  // ------------------------------------------------------------ search
  function search(text) {
    const q = text.trim().toLowerCase();
    document.querySelectorAll("g.hit").forEach((e) => e.classList.remove("hit"));
    const list = document.getElementById("results");
    const out = document.getElementById("hits");
    if (!q) { list.hidden = true; out.textContent = ""; return []; }
    const drawn = tagged(level).filter((e) => key(e).toLowerCase().includes(q) ||
      (e.querySelector("title") || { textContent: "" }).textContent.toLowerCase().includes(q) ||
      e.textContent.toLowerCase().includes(q));
    drawn.forEach((e) => e.classList.add("hit"));
    const found = [];
    for (const u of UNITS) if (u.toLowerCase().includes(q)) found.push(["unit", u]);
    for (const [name, n] of Object.entries(facts.nodes)) {
      if (name.toLowerCase().includes(q) || String(n.target).toLowerCase().includes(q)) found.push(["node", name]);
    }
    out.textContent = `${drawn.length} drawn, ${found.length} found`;
    list.innerHTML = found.slice(0, 200).map(([kind, name]) =>
      `<li data-kind="${kind}" data-name="${esc(name)}">${kind === "unit" ? "▣ " : "· "}${esc(name)}</li>`).join("");
    list.hidden = !found.length;
    return found;
  }
  function open(kind, name) {
    document.getElementById("results").hidden = true;
    const unit = kind === "unit" ? name : facts.nodes[name].unit;
    if (unit) go("block", [unit]);
    if (kind === "unit") showUnit(name); else showNode(name);
  }

  // ------------------------------------------------------------ colour scale
  function recolour(m) {
    metric = m;
    const [field, title, fmt] = METRICS[m];
    const palette = facts.view.palette;
    let low = Infinity, high = -Infinity;
    for (const lvl of LEVELS) {
      const els = tagged(lvl).filter((e) => key(e).startsWith("unit:"));
      const values = els.map((e) => { const r = rowOf(e); return r ? r[field] : null; });
      const known = values.filter((v) => v !== null && v !== undefined);
      const lo = Math.min(...known), hi = Math.max(...known);
      if (lvl === level) { low = lo; high = hi; }
      els.forEach((e, i) => {
        const v = values[i];
        const colour = v === null || v === undefined ? "white" :
          hi === lo ? palette[0] : palette[Math.round((v - lo) / (hi - lo) * (palette.length - 1))];
        const shape = Array.from(e.children).find((c) => (c.tagName === "path" || c.tagName === "polygon") &&
          c.getAttribute("fill") && c.getAttribute("fill") !== "none");
        if (shape) shape.setAttribute("fill", colour);
      });
    }
    const legend = document.getElementById("legend");
    legend.innerHTML = isFinite(low) ? `${esc(title)}: ` + palette.map((c, i) =>
      `<span style="background:${c}">${esc(fmt(Math.round(low + (high - low) * i / (palette.length - 1))))}</span>`).join("") : "";
  }

  // ------------------------------------------------------------ start
  function start() {
    document.querySelectorAll(".pane").forEach((p) => {
      const l = p.dataset.level, svg = p.querySelector("svg");
      panes[l] = p;
      svg.removeAttribute("width"); svg.removeAttribute("height");
      svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
      const vb = svg.viewBox.baseVal;
      views[l] = { svg, full: [vb.x, vb.y, vb.width, vb.height], box: [vb.x, vb.y, vb.width, vb.height] };
      svg.addEventListener("click", onClick);
    });
    installPanZoom();
    document.querySelectorAll("[data-go]").forEach((b) => b.addEventListener("click", () => go(b.dataset.go)));
    document.getElementById("collapse").addEventListener("click", collapse);
    document.getElementById("fit").addEventListener("click", () => fit(level));
    document.getElementById("metric").addEventListener("change", (ev) => recolour(ev.target.value));
    const box = document.getElementById("search");
    box.addEventListener("input", () => search(box.value));
    box.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { const f = search(box.value); if (f.length) open(f[0][0], f[0][1]); }
    });
    document.getElementById("results").addEventListener("click", (ev) => {
      const li = ev.target.closest("li"); if (li) open(li.dataset.kind, li.dataset.name);
    });
    document.getElementById("details").addEventListener("click", (ev) => {
      const a = ev.target.closest("[data-eval]");
      if (a && a.tagName === "A") {
        ev.preventDefault();
        const [label, index] = a.dataset.eval.split(":");
        showEvaluation(label, Number(index));
      }
    });
    window.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && ev.target !== box) collapse(); });
    go(level);
    previous = [];
    recolour(metric);
    document.body.dataset.ready = "1";
    performance.mark("rkcompile-view-ready");
  }
  start();
})();
