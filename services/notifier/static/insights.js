/* The merchant insights page (issue #18): badge experiments and their results.
 * Login: the shop's service token, pasted into the form, kept in sessionStorage (this tab only)
 * and sent as a bearer token to GET /v1/experiments and /v1/experiments/{id}/results(.csv) of
 * this server. Per experiment: the variants side by side with the uplift interval drawn, the
 * cumulative conversion rate per day as an SVG chart (axes, legend, a text description), the
 * verdict, the sample-ratio warning, the funnel per product and a CSV download (fetched with the
 * token, saved from a blob). English and Spanish: ?lang=es, the browser's language, or the switch.
 * Everything from the server goes into the page as text (textContent), never as markup. */
(function () {
  "use strict";
  var TOKEN_KEY = "socialproof.insights.token";
  var NO_EXPERIMENT = "_";
  var COLORS = ["#6b7685", "#2f6fed", "#d9480f", "#2b8a3e", "#ae3ec9", "#e8590c"];
  var SVG = "http://www.w3.org/2000/svg";
  var MAX_PRODUCT_ROWS = 100;
  var T = {
    en: {
      brand: "badge insights", language: "Language", signOut: "Sign out", signInTitle: "Sign in",
      signInHelp: "Paste your shop's service token. It stays in this browser tab (session storage) and is sent only to this server.",
      tokenLabel: "Service token", signIn: "Sign in", experiments: "Experiments",
      variantsCaption: "Variants side by side", colVariant: "Variant", colSplit: "Split",
      colVisitors: "Visitors", colImpressions: "Impressions", colClicks: "Clicks",
      colPurchases: "Purchases", colConversions: "Converted visitors", colRate: "Conversion rate",
      colUplift: "Uplift vs control (95% interval)", colProduct: "Product",
      colClickRate: "Click rate", colPurchaseRate: "Purchases per impression",
      chartCaption: "Conversion rate over time (cumulative, per UTC day)",
      productsCaption: "Per product: impressions → clicks → purchases",
      csv: "Download the numbers (CSV)", method: "How these numbers are computed",
      wrongToken: "That is not this shop's service token: the server refused it. Check it and try again.",
      noToken: "Paste the service token first.",
      unreachable: "The server did not answer; try again in a moment.",
      storeDown: "The results store is unavailable right now; try again in a moment.",
      notFound: "No such experiment: ",
      plain: "Plain badge (no experiment)", plainNote: "interactions outside experiments",
      control: "control group", noBadge: "no badge", badge: "badge",
      status: { active: "active", scheduled: "scheduled", stopped: "stopped" },
      meta: function (r) {
        if (r.experiment_id === NO_EXPERIMENT) return "The shop's overall badge funnel: every badge interaction outside an experiment, attributed within 24 h.";
        return "Status: " + (T.en.status[r.status] || r.status) + " · started " + day(r.starts_at) +
          " · attribution window " + r.attribution_window_h + " h · minimum detectable effect " + pct(r.minimum_detectable_effect, 0, false);
      },
      sample: function (s) {
        if (s.required_per_variant == null) return "Sample needed per variant: not known yet (the control has no purchase).";
        return "Sample needed per variant: " + int(s.required_per_variant) + " visitors" + (s.sufficient ? " (reached)." : " (not reached yet).");
      },
      srm: function (p) { return "Sample-ratio mismatch: the visitors per variant do not match the planned split (p = " + p.toExponential(1) + "). Do not trust these results until the cause is fixed."; },
      upliftLabel: function (u) { return "Uplift " + pct(u.estimate, 1, true) + ", 95% interval " + pct(u.ci95[0], 1, true) + " to " + pct(u.ci95[1], 1, true); },
      chartDesc: function (last, from, to) { return "Cumulative conversion rate per day from " + from + " to " + to + ". Latest: " + last + "."; },
      more: function (n) { return n + " more products in the CSV."; },
      noProducts: "No badge impressions yet.",
      axisRate: "conversion rate",
    },
    es: {
      brand: "resultados de insignias", language: "Idioma", signOut: "Cerrar sesión", signInTitle: "Iniciar sesión",
      signInHelp: "Pegue el token de servicio de su tienda. Se guarda solo en esta pestaña (almacenamiento de sesión) y solo se envía a este servidor.",
      tokenLabel: "Token de servicio", signIn: "Entrar", experiments: "Experimentos",
      variantsCaption: "Variantes lado a lado", colVariant: "Variante", colSplit: "Reparto",
      colVisitors: "Visitantes", colImpressions: "Impresiones", colClicks: "Clics",
      colPurchases: "Compras", colConversions: "Visitantes que compraron", colRate: "Tasa de conversión",
      colUplift: "Mejora frente al control (intervalo del 95 %)", colProduct: "Producto",
      colClickRate: "Tasa de clics", colPurchaseRate: "Compras por impresión",
      chartCaption: "Tasa de conversión en el tiempo (acumulada, por día UTC)",
      productsCaption: "Por producto: impresiones → clics → compras",
      csv: "Descargar los números (CSV)", method: "Cómo se calculan estos números",
      wrongToken: "Ese no es el token de servicio de esta tienda: el servidor lo rechazó. Revíselo e inténtelo de nuevo.",
      noToken: "Pegue primero el token de servicio.",
      unreachable: "El servidor no respondió; inténtelo de nuevo en un momento.",
      storeDown: "El almacén de resultados no está disponible ahora; inténtelo de nuevo en un momento.",
      notFound: "No existe el experimento: ",
      plain: "Insignia sin experimento", plainNote: "interacciones fuera de experimentos",
      control: "grupo de control", noBadge: "sin insignia", badge: "insignia",
      status: { active: "activo", scheduled: "programado", stopped: "detenido" },
      meta: function (r) {
        if (r.experiment_id === NO_EXPERIMENT) return "El embudo general de las insignias de la tienda: toda interacción fuera de un experimento, atribuida en 24 h.";
        return "Estado: " + (T.es.status[r.status] || r.status) + " · inicio " + day(r.starts_at) +
          " · ventana de atribución " + r.attribution_window_h + " h · efecto mínimo detectable " + pct(r.minimum_detectable_effect, 0, false);
      },
      sample: function (s) {
        if (s.required_per_variant == null) return "Muestra necesaria por variante: aún desconocida (el control no tiene compras).";
        return "Muestra necesaria por variante: " + int(s.required_per_variant) + " visitantes" + (s.sufficient ? " (alcanzada)." : " (aún no alcanzada).");
      },
      srm: function (p) { return "Desajuste de proporciones: los visitantes por variante no siguen el reparto previsto (p = " + p.toExponential(1) + "). No confíe en estos resultados hasta corregir la causa."; },
      upliftLabel: function (u) { return "Mejora " + pct(u.estimate, 1, true) + ", intervalo del 95 % de " + pct(u.ci95[0], 1, true) + " a " + pct(u.ci95[1], 1, true); },
      chartDesc: function (last, from, to) { return "Tasa de conversión acumulada por día del " + from + " al " + to + ". Último día: " + last + "."; },
      more: function (n) { return n + " productos más en el CSV."; },
      noProducts: "Aún no hay impresiones de insignias.",
      axisRate: "tasa de conversión",
    },
  };
  var params = new URLSearchParams(location.search);
  var lang = pickLang();
  var experiments = [];
  var current = null;   // the experiment id shown
  var results = null;   // its last results

  function $(id) { return document.getElementById(id); }
  function t(key) { return T[lang][key]; }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) e.textContent = text;
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) e.textContent = text;
    return e;
  }
  function pickLang() {
    var asked = params.get("lang");
    if (asked === "en" || asked === "es") return asked;
    return (navigator.language || "en").toLowerCase().indexOf("es") === 0 ? "es" : "en";
  }
  // numbers as the server's verdict writes them: en 12,345 and 4.84%; es 12.345 (1234) and 4,84 %
  function int(n) {
    var text = Number(n).toLocaleString("en-US");
    if (lang === "en") return text;
    return n < 10000 ? String(n) : text.replace(/,/g, ".");
  }
  function pct(x, digits, signed) {
    var v = (x * 100).toFixed(digits);
    if (signed && v.charAt(0) !== "-") v = "+" + v;  // as Python's "+.1f": +0.0, -0.0
    return lang === "en" ? v + "%" : v.replace(".", ",") + " %";
  }
  function day(iso) {
    if (!iso) return "";
    return new Date(iso).toLocaleDateString(lang === "es" ? "es-ES" : "en-US", { timeZone: "UTC", day: "numeric", month: "short", year: "numeric" });
  }
  function shortDay(date) {
    return new Date(date + "T00:00:00Z").toLocaleDateString(lang === "es" ? "es-ES" : "en-US", { timeZone: "UTC", day: "numeric", month: "short" });
  }

  // --- the server -------------------------------------------------------------------------------

  function token() { return sessionStorage.getItem(TOKEN_KEY); }
  function call(path) {
    return fetch(path, { headers: { Authorization: "Bearer " + token() }, cache: "no-store" }).then(function (r) {
      if (r.status === 401 || r.status === 403) { var e = new Error("auth"); e.auth = true; throw e; }
      if (!r.ok) { var err = new Error("http " + r.status); err.status = r.status; throw err; }
      return r;
    });
  }
  function loadExperiments() {
    var items = [];
    function page(cursor, left) {
      var q = "v1/experiments?limit=100" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      return call(q).then(function (r) { return r.json(); }).then(function (body) {
        items = items.concat(body.items);
        return body.next_cursor && left > 0 ? page(body.next_cursor, left - 1) : items;
      });
    }
    return page(null, 20);
  }
  function resultsPath(id, csv) { return "v1/experiments/" + encodeURIComponent(id) + "/results" + (csv ? ".csv" : ""); }

  // --- login --------------------------------------------------------------------------------------

  function showLogin(message) {
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").setAttribute("aria-invalid", message ? "true" : "false");
    $("token").focus();
  }
  function signIn() {
    return loadExperiments().then(function (items) {
      experiments = items;
      $("login").hidden = true;
      $("app").hidden = false;
      $("logout").hidden = false;
      $("token").value = "";
      renderList();
      var wanted = decodeURIComponent((location.hash.match(/^#e=(.+)$/) || [])[1] || "");
      var ids = experiments.map(function (e) { return e.id; }).concat([NO_EXPERIMENT]);
      select(ids.indexOf(wanted) >= 0 ? wanted : ids[0]);
    }).catch(function (e) {
      if (e.auth) { sessionStorage.removeItem(TOKEN_KEY); showLogin(t("wrongToken")); }
      else showLogin(t("unreachable"));
    });
  }

  // --- the list -----------------------------------------------------------------------------------

  function renderList() {
    var ul = $("experiments");
    ul.textContent = "";
    experiments.concat([{ id: NO_EXPERIMENT }]).forEach(function (x) {
      var b = el("button", { type: "button", "data-experiment": x.id });
      if (x.id === NO_EXPERIMENT) {
        b.appendChild(document.createTextNode(t("plain")));
        b.appendChild(el("small", null, t("plainNote")));
      } else {
        b.appendChild(document.createTextNode(x.title || x.id));
        var small = el("small", null, (x.title ? x.id + " · " : ""));
        small.appendChild(el("span", { class: "status " + x.status }, t("status")[x.status] || x.status));
        b.appendChild(small);
      }
      b.setAttribute("aria-current", x.id === current ? "true" : "false");
      b.addEventListener("click", function () { select(x.id); });
      var li = el("li");
      li.appendChild(b);
      ul.appendChild(li);
    });
  }
  function select(id) {
    current = id;
    history.replaceState(null, "", location.pathname + location.search + "#e=" + encodeURIComponent(id));
    Array.prototype.forEach.call(document.querySelectorAll("#experiments button"), function (b) {
      b.setAttribute("aria-current", b.getAttribute("data-experiment") === id ? "true" : "false");
    });
    $("experiment").setAttribute("aria-busy", "true");
    $("exp-error").textContent = "";
    call(resultsPath(id)).then(function (r) { return r.json(); }).then(function (body) {
      if (current !== id) return;
      results = body;
      render();
    }).catch(function (e) {
      if (e.auth) { sessionStorage.removeItem(TOKEN_KEY); showLogin(t("wrongToken")); return; }
      $("exp-body").hidden = true;
      $("exp-error").textContent = e.status === 404 ? t("notFound") + id : e.status === 503 ? t("storeDown") : t("unreachable");
    }).then(function () { $("experiment").setAttribute("aria-busy", "false"); });
  }

  // --- one experiment -----------------------------------------------------------------------------

  function render() {
    var r = results;
    if (!r) return;
    $("exp-title").textContent = r.experiment_id === NO_EXPERIMENT ? t("plain") : (r.title || r.experiment_id);
    $("exp-meta").textContent = (r.title && r.experiment_id !== NO_EXPERIMENT ? r.experiment_id + " · " : "") + t("meta")(r);
    var srm = $("srm");
    srm.hidden = !r.srm_warning;
    srm.textContent = r.srm_warning ? t("srm")(r.srm_p_value) : "";
    var verdict = $("verdict");
    verdict.className = "verdict " + r.verdict.kind;
    verdict.setAttribute("data-kind", r.verdict.kind);
    verdict.textContent = lang === "es" ? r.verdict.text_es : r.verdict.text_en;
    $("sample").textContent = r.variants.length > 1 ? t("sample")(r.sample) : "";
    renderVariants(r);
    renderChart(r);
    renderProducts(r);
    var csv = $("csv");
    csv.setAttribute("href", resultsPath(r.experiment_id, true));
    csv.setAttribute("download", "experiment-" + r.experiment_id.replace(/[^A-Za-z0-9._-]/g, "-") + "-results.csv");
    $("method-text").textContent = lang === "es" ? r.method_es : r.method;
    $("exp-body").hidden = false;
  }

  function variantNote(v, i) {
    var what = v.badge === "none" ? t("noBadge") : (v.elements ? v.elements.join(" + ") : t("badge"));
    return (i === 0 && results.variants.length > 1 ? t("control") + " · " : "") + what;
  }

  function renderVariants(r) {
    var body = $("variants").querySelector("tbody");
    body.textContent = "";
    // one scale for every interval bar, always showing 0
    var lo = 0, hi = 0;
    r.variants.forEach(function (v) { if (v.uplift) { lo = Math.min(lo, v.uplift.ci95[0]); hi = Math.max(hi, v.uplift.ci95[1]); } });
    var pad = Math.max((hi - lo) * 0.08, 0.02);
    lo -= pad; hi += pad;
    r.variants.forEach(function (v, i) {
      var tr = el("tr", { "data-variant": v.name });
      var th = el("th", { scope: "row" });
      var sw = el("span", { class: "swatch", "aria-hidden": "true" });
      sw.style.background = COLORS[i % COLORS.length];
      th.appendChild(sw);
      th.appendChild(document.createTextNode(v.name));
      th.appendChild(el("small", { class: "note" }, variantNote(v, i)));
      tr.appendChild(th);
      tr.appendChild(el("td", { class: "num", "data-col": "split" }, v.split + (lang === "en" ? "%" : " %")));
      ["visitors", "impressions", "clicks", "purchases", "conversions"].forEach(function (k) {
        tr.appendChild(el("td", { class: "num", "data-col": k }, int(v[k])));
      });
      tr.appendChild(el("td", { class: "num", "data-col": "conversion_rate" }, pct(v.conversion_rate, 2, false)));
      var up = el("td", { class: "uplift", "data-col": "uplift" });
      if (v.uplift) {
        up.appendChild(el("span", { class: "uplift-text" }, pct(v.uplift.estimate, 1, true) + " [" + pct(v.uplift.ci95[0], 1, true) + ", " + pct(v.uplift.ci95[1], 1, true) + "]"));
        up.appendChild(intervalBar(v.uplift, lo, hi, COLORS[i % COLORS.length]));
      } else {
        up.appendChild(el("span", { class: "muted" }, i === 0 && r.variants.length > 1 ? "—" : "n/a"));
      }
      tr.appendChild(up);
      body.appendChild(tr);
    });
  }

  function intervalBar(u, lo, hi, color) {
    var w = 150, h = 20, x = function (v) { return 4 + (v - lo) / (hi - lo) * (w - 8); };
    var s = svg("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h, role: "img", class: "interval", "aria-label": t("upliftLabel")(u) });
    s.appendChild(svg("line", { x1: x(0), x2: x(0), y1: 0, y2: h, stroke: "#1c2430", "stroke-width": 1, "stroke-dasharray": "2 2" }));
    var left = x(u.ci95[0]), right = x(u.ci95[1]);
    s.appendChild(svg("rect", { class: "ci", x: left, y: 6, width: Math.max(right - left, 1), height: 8, rx: 3, fill: color, "fill-opacity": 0.35, stroke: color }));
    s.appendChild(svg("rect", { class: "estimate", x: x(u.estimate) - 1.5, y: 3, width: 3, height: 14, fill: color }));
    return s;
  }

  function renderChart(r) {
    var holder = $("chart-svg");
    holder.textContent = "";
    var legend = $("legend");
    legend.textContent = "";
    var series = r.series;
    var W = 720, H = 280, L = 64, R = 16, TOP = 14, B = 44;
    var times = series.map(function (p) { return Date.parse(p.date + "T00:00:00Z"); });
    var t0 = times[0], t1 = times[times.length - 1];
    var maxRate = 0;
    series.forEach(function (p) { p.variants.forEach(function (v) { maxRate = Math.max(maxRate, v.conversion_rate); }); });
    var top = niceCeil(Math.max(maxRate * 1.1, 0.01));
    var x = function (ms) { return t1 === t0 ? (L + W - R) / 2 : L + (ms - t0) / (t1 - t0) * (W - L - R); };
    var y = function (rate) { return H - B - rate / top * (H - B - TOP); };
    var from = shortDay(series[0].date), to = shortDay(series[series.length - 1].date);
    var last = series[series.length - 1].variants.map(function (v) { return v.name + " " + pct(v.conversion_rate, 2, false); }).join(", ");
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "chart-title chart-desc" });
    s.appendChild(svg("title", { id: "chart-title" }, t("chartCaption")));
    s.appendChild(svg("desc", { id: "chart-desc" }, t("chartDesc")(last, from, to)));
    var axes = svg("g", { class: "axes", "font-size": 11, fill: "#5d6876" });
    for (var i = 0; i <= 4; i++) {  // y: 5 ticks with grid lines
      var rate = top * i / 4, yy = y(rate);
      axes.appendChild(svg("line", { x1: L, x2: W - R, y1: yy, y2: yy, stroke: i ? "#e3e7ee" : "#1c2430" }));
      axes.appendChild(svg("text", { x: L - 6, y: yy + 4, "text-anchor": "end" }, pct(rate, decimals(top / 4), false)));
    }
    axes.appendChild(svg("line", { x1: L, x2: L, y1: TOP, y2: H - B, stroke: "#1c2430" }));
    var every = Math.max(1, Math.ceil(series.length / 8));  // x: at most ~8 date labels
    series.forEach(function (p, k) {
      if (k % every && k !== series.length - 1) return;
      var xx = x(times[k]);
      axes.appendChild(svg("line", { x1: xx, x2: xx, y1: H - B, y2: H - B + 4, stroke: "#1c2430" }));
      axes.appendChild(svg("text", { x: xx, y: H - B + 17, "text-anchor": "middle" }, shortDay(p.date)));
    });
    axes.appendChild(svg("text", { x: 14, y: (H - B + TOP) / 2, transform: "rotate(-90 14 " + (H - B + TOP) / 2 + ")", "text-anchor": "middle" }, t("axisRate")));
    s.appendChild(axes);
    r.variants.forEach(function (v, j) {
      var color = COLORS[j % COLORS.length];
      var pts = series.map(function (p, k) { return x(times[k]).toFixed(1) + "," + y(p.variants[j].conversion_rate).toFixed(1); });
      var g = svg("g", { class: "line", "data-variant": v.name });
      g.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2.5 }));
      series.forEach(function (p, k) {
        var c = svg("circle", { cx: x(times[k]), cy: y(p.variants[j].conversion_rate), r: 3, fill: color });
        c.appendChild(svg("title", null, v.name + " · " + shortDay(p.date) + ": " + pct(p.variants[j].conversion_rate, 2, false) +
          " (" + int(p.variants[j].conversions) + " / " + int(p.variants[j].visitors) + ")"));
        g.appendChild(c);
      });
      s.appendChild(g);
      var li = el("li", { "data-variant": v.name });
      var sw = el("span", { class: "swatch", "aria-hidden": "true" });
      sw.style.background = color;
      li.appendChild(sw);
      li.appendChild(document.createTextNode(v.name));
      legend.appendChild(li);
    });
    holder.appendChild(s);
  }

  function decimals(step) {  // enough for every tick of this step to print exactly (2.5%: 1)
    for (var d = 0; d < 3; d++) if (Math.abs(step * 100 * Math.pow(10, d) - Math.round(step * 100 * Math.pow(10, d))) < 1e-9) return d;
    return 3;
  }
  function niceCeil(v) {
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function renderProducts(r) {
    var body = $("products").querySelector("tbody");
    body.textContent = "";
    var shown = r.products.slice(0, MAX_PRODUCT_ROWS);
    if (!shown.length) {
      var tr0 = el("tr");
      tr0.appendChild(el("td", { colspan: 7, class: "muted" }, t("noProducts")));
      body.appendChild(tr0);
    }
    shown.forEach(function (p) {
      p.variants.forEach(function (v, i) {
        var tr = el("tr", { "data-product": p.product_id, "data-variant": v.name });
        if (i === 0) tr.appendChild(el("th", { scope: "rowgroup", rowspan: p.variants.length }, p.product_id));
        tr.appendChild(el("td", null, v.name));
        ["impressions", "clicks", "purchases"].forEach(function (k) {
          tr.appendChild(el("td", { class: "num", "data-col": k }, int(v[k])));
        });
        tr.appendChild(el("td", { class: "num" }, v.impressions ? pct(v.clicks / v.impressions, 1, false) : "—"));
        tr.appendChild(el("td", { class: "num" }, v.impressions ? pct(v.purchases / v.impressions, 1, false) : "—"));
        body.appendChild(tr);
      });
    });
    var more = $("products-more");
    more.hidden = r.products.length <= MAX_PRODUCT_ROWS;
    more.textContent = more.hidden ? "" : t("more")(r.products.length - MAX_PRODUCT_ROWS);
  }

  function downloadCsv(ev) {
    ev.preventDefault();
    var a = ev.currentTarget;
    call(a.getAttribute("href")).then(function (r) { return r.blob(); }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      var save = el("a", { href: url, download: a.getAttribute("download") });
      document.body.appendChild(save);
      save.click();
      save.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
    }).catch(function (e) {
      if (e.auth) { sessionStorage.removeItem(TOKEN_KEY); showLogin(t("wrongToken")); return; }
      $("exp-error").textContent = e.status === 503 ? t("storeDown") : t("unreachable");
    });
  }

  // --- language -----------------------------------------------------------------------------------

  function applyLang() {
    document.documentElement.lang = lang;
    $("lang").value = lang;
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n]"), function (e) {
      var text = T[lang][e.getAttribute("data-i18n")];
      if (typeof text === "string") e.textContent = text;
    });
    $("legend").setAttribute("aria-label", lang === "es" ? "Leyenda" : "Legend");
    if (!$("app").hidden) { renderList(); render(); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    applyLang();
    $("lang").addEventListener("change", function () {
      lang = $("lang").value;
      params.set("lang", lang);
      history.replaceState(null, "", location.pathname + "?" + params.toString() + location.hash);
      applyLang();
    });
    $("login-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var value = $("token").value.trim();
      if (!value) { showLogin(t("noToken")); return; }
      sessionStorage.setItem(TOKEN_KEY, value);
      signIn();
    });
    $("logout").addEventListener("click", function () {
      sessionStorage.removeItem(TOKEN_KEY);
      results = null; current = null;
      showLogin("");
    });
    $("csv").addEventListener("click", downloadCsv);
    if (token()) signIn(); else showLogin("");
  });
})();
