// anthropic-gateway status page: polls /status/data and draws it. Every value is written with
// textContent (never innerHTML): model names and key labels are text, whatever a client sent.
"use strict";
(() => {
  const STORE = "anthropic-gateway-admin-key";
  const SVG = "http://www.w3.org/2000/svg";
  const W = 600, H = 170, L = 44, R = 6, T = 8, B = 18;
  const $ = (id) => document.getElementById(id);
  let range = "15m", timer = 0, first = true, failures = 0;

  // Plain formatting, no Intl: its first use loads locale data, which costs more than the page.
  const num = (x, d = 0) => {
    if (x == null) return "–";
    const [whole, frac] = Math.abs(x).toFixed(d).split(".");
    return (x < 0 && Number(x.toFixed(d)) !== 0 ? "-" : "") + whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (frac ? "." + frac : "");
  };
  const short = (x) => x == null ? "–" : x >= 1e6 ? num(x / 1e6, 1) + "M" : x >= 1e4 ? num(x / 1e3, 1) + "k" : num(x, x < 10 && x % 1 ? 2 : 0);
  const ms = (x) => x == null ? "–" : x < 10 ? num(x, 2) : num(x, 0);
  const usd = (x) => x == null ? "–" : "$" + (x < 1 ? num(x, 4) : num(x, 2));
  const pct = (x) => x == null ? "–" : num(x * 100, 1) + "%";
  const two = (n) => (n < 10 ? "0" : "") + n;
  const hm = (d) => two(d.getHours()) + ":" + two(d.getMinutes());
  const clock = (t) => { const d = new Date(t * 1000); return hm(d) + ":" + two(d.getSeconds()); };
  const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const when = (t, step) => { const d = new Date(t * 1000); return step >= 3600 ? DAYS[d.getDay()] + " " + hm(d) : hm(d); };
  const set = (id, text) => { $(id).textContent = text; };

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function rows(id, items, cells) {
    const body = $(id).tBodies[0];
    const out = items.map((item) => {
      const tr = document.createElement("tr");
      for (const [text, cls] of cells(item)) tr.appendChild(el("td", text, cls));
      return tr;
    });
    if (!out.length) { const tr = document.createElement("tr"); const td = el("td", "none", "dim"); td.colSpan = $(id).tHead.rows[0].cells.length; tr.appendChild(td); out.push(tr); }
    body.replaceChildren(...out);
  }

  function nice(max) {
    if (!(max > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(max)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
    return 10 * p;
  }

  function chart(id, t, step, lines) {
    const svg = $(id), legend = $("l" + id.slice(1));
    let max = 0;
    for (const l of lines) for (const v of l.values) if (v != null && v > max) max = v;
    const top = nice(max), n = t.length;
    const x = (i) => L + (n > 1 ? i * (W - L - R) / (n - 1) : 0);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const kids = [];
    for (const f of [0, 0.5, 1]) {
      const g = document.createElementNS(SVG, "line");
      g.setAttribute("class", "grid");
      g.setAttribute("x1", L); g.setAttribute("x2", W - R); g.setAttribute("y1", y(top * f)); g.setAttribute("y2", y(top * f));
      kids.push(g);
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", L - 4); label.setAttribute("y", y(top * f) + 4); label.setAttribute("text-anchor", "end");
      label.textContent = short(top * f);
      kids.push(label);
    }
    if (n) for (const [i, anchor] of [[0, "start"], [n - 1, "end"]]) {
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", x(i)); label.setAttribute("y", H - 4); label.setAttribute("text-anchor", anchor);
      label.textContent = when(t[i], step);
      kids.push(label);
    }
    lines.forEach((l, k) => {
      let d = "", pen = false;
      l.values.forEach((v, i) => {
        if (v == null) { pen = false; return; }
        d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
        pen = true;
      });
      const p = document.createElementNS(SVG, "path");
      p.setAttribute("class", "s" + (l.cls ?? k));
      p.setAttribute("d", d || "M0 0");
      kids.push(p);
    });
    svg.replaceChildren(...kids);
    svg.dataset.points = String(n);
    legend.replaceChildren(...lines.map((l, k) => el("span", l.name, "s" + (l.cls ?? k))));
  }

  function render(d) {
    const tot = d.totals, step = d.step;
    // The charts end at the last whole point: the one under way would read as a sudden drop.
    const whole = d.series.t.length && d.now - d.series.t[d.series.t.length - 1] < step ? d.series.t.length - 1 : d.series.t.length;
    const s = {};
    for (const [name, values] of Object.entries(d.series)) s[name] = values.slice(0, whole);
    set("t-rps", num(tot.requests_per_second, 2));
    set("t-requests", num(tot.requests) + " requests");
    set("t-eps", num(tot.errors_per_second, 2));
    set("t-errors", num(tot.errors) + " errors (" + pct(tot.error_rate) + ")  4xx " + num(tot.by_class["4xx"]) + " · 5xx " + num(tot.by_class["5xx"]));
    set("t-inflight", num(d.in_flight.requests));
    set("t-streams", num(d.in_flight.streams) + " streams");
    const lat = tot.latency_ms;
    set("t-latency", ms(lat.p50) + " / " + ms(lat.p95) + " / " + ms(lat.p99));
    set("t-ttft", "time to first token p50 " + ms(tot.ttft_ms.p50) + " ms, p95 " + ms(tot.ttft_ms.p95) + " ms");
    set("t-overhead", ms(tot.overhead_ms.p50) + " / " + ms(tot.overhead_ms.p99) + " ms");
    const tps = tot.tokens_per_second;
    set("t-tps", num(tps.input + tps.output + tps.cache_read + tps.cache_write, 1));
    set("t-share", "cache-read share " + pct(tot.cache_read_share) + " · " + short(tot.tokens.output) + " output");
    set("t-cph", usd(tot.cost_per_hour));
    set("t-cost", usd(tot.cost_usd) + " in this range");
    set("t-today", usd(d.today.cost_usd));
    set("t-today-requests", num(d.today.requests) + " requests " + d.today.date);
    const rc = d.response_cache;
    set("t-cache", rc.enabled ? pct(rc.hit_ratio) : "off");
    set("t-cache-detail", num(rc.hits) + " hits · " + num(rc.misses) + " misses · " + num(rc.coalesced) + " coalesced");

    chart("c-requests", s.t, step, [{name: "2xx", values: s["2xx"], cls: 0}, {name: "4xx", values: s["4xx"], cls: 1}, {name: "5xx", values: s["5xx"], cls: 2}]);
    const ledger = d.source === "ledger";
    set("c-latency-title", ledger ? "Latency (ms, mean per point)" : "Latency (ms)");
    chart("c-latency", s.t, step, ledger
      ? [{name: "mean", values: s.mean_ms}, {name: "time to first token, mean", values: s.mean_ttft_ms, cls: 3}]
      : [{name: "p50", values: s.p50}, {name: "p95", values: s.p95, cls: 1}, {name: "p99", values: s.p99, cls: 2}, {name: "TTFT p50", values: s.ttft_p50, cls: 3}]);
    chart("c-tokens", s.t, step, [{name: "input", values: s.input}, {name: "output", values: s.output, cls: 3}, {name: "cache read", values: s.cache_read, cls: 4}, {name: "cache write", values: s.cache_write, cls: 1}]);
    chart("c-cost", s.t, step, [{name: "USD/h", values: s.cost_per_hour}]);

    const joined = (ranged, today) => {
      const m = new Map();
      for (const r of ranged) m.set(r.name, {name: r.name, range: r.cost_usd, today: 0, requests: 0});
      for (const r of today) { const e = m.get(r.name) || {name: r.name, range: 0}; e.today = r.cost_usd; e.requests = r.requests; m.set(r.name, e); }
      return [...m.values()].sort((a, b) => b.today - a.today || b.range - a.range || (a.name < b.name ? -1 : 1));
    };
    const costRow = (r) => [[r.name || "–", "t"], [usd(r.range), "n"], [usd(r.today), "n"], [num(r.requests), "n"]];
    rows("models", joined(tot.cost_by_model, d.today.by_model), costRow);
    rows("keys", joined(tot.cost_by_key, d.today.by_key), costRow);
    rows("backends", d.backends, (b) => {
      const p = b.probe;
      return [[b.name, "t"], [p ? p.detail + " · " + clock(Date.parse(p.at) / 1000) : "not probed", p ? (p.ok ? "ok" : p.reachable ? "warn" : "err") : ""],
        [p ? ms(p.latency_ms) : "–", "n"], [num(b.requests), "n"], [pct(b.error_rate), b.errors ? "n err" : "n"], [ms(b.mean_upstream_ms), "n"]];
    });
    rows("batches", d.batches, (b) => [[b.id, "t"], [b.status], [num(b.total), "n"], ...["pending", "running", "succeeded", "errored", "canceled", "expired"].map((k) => [num(b.counts[k]), "n"])]);
    rows("recent", d.recent, (r) => [[clock(r.at)], [r.key ?? "–", "t"], [r.model ?? "–", "t"], [r.status, r.status >= 400 ? "err" : ""],
      [ms(r.latency_ms), "n"], [num(r.input_tokens), "n"], [num(r.output_tokens), "n"], [num(r.cache_read_tokens), "n"], [usd(r.cost_usd), "n"]]);

    const u = $("updated");
    u.textContent = "updated " + clock(d.now) + (d.source === "ledger" ? " · from the ledger" : "");
    u.className = "";
    document.body.dataset.loaded = String(d.now);
    if (first) { first = false; performance.mark("status-rendered"); }
  }

  function showLogin(message) {
    $("main").hidden = true;
    $("signout").hidden = true;
    $("login").hidden = false;
    set("login-error", message || "");
    $("key").focus();
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(load, range === "15m" || range === "1h" ? 2000 : 15000);
  }

  async function load() {
    clearTimeout(timer);
    const key = sessionStorage.getItem(STORE);
    const headers = {accept: "application/json"};
    if (key) headers["x-api-key"] = key;
    let r;
    try {
      r = await fetch("/status/data?range=" + encodeURIComponent(range), {headers, cache: "no-store", credentials: "omit"});
    } catch (e) {
      stale("gateway unreachable");
      return;
    }
    if (r.status === 401 || r.status === 403) {
      sessionStorage.removeItem(STORE);
      let message = "";
      if (key) { try { message = (await r.json()).error.message; } catch (e) { message = "key refused"; } }
      showLogin(message);
      return;
    }
    if (!r.ok) { stale("HTTP " + r.status); return; }
    const d = await r.json();
    failures = 0;
    $("login").hidden = true;
    $("main").hidden = false;
    $("signout").hidden = !key;
    render(d);
    schedule();
  }

  function stale(why) {
    failures++;
    const u = $("updated");
    u.textContent = why + (failures > 1 ? " (" + failures + " tries)" : "");
    u.className = "stale";
    schedule();
  }

  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("key");
    if (!input.value) return;
    sessionStorage.setItem(STORE, input.value);
    input.value = "";
    load();
  });
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(STORE); showLogin(""); });
  for (const b of document.querySelectorAll("#ranges button")) {
    b.addEventListener("click", () => {
      range = b.dataset.range;
      for (const o of document.querySelectorAll("#ranges button")) o.classList.toggle("on", o === b);
      load();
    });
  }
  load();
})();
