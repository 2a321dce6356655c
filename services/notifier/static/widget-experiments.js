/*
 * socialproof widget, part 2: badge experiments and interaction beacons (issue #18).
 *
 * Not loaded on its own: the notifier serves it inside widget.js's closure (storefront.py puts
 * this file where widget.js marks it), and widget.js calls socialproofExperiments(w) with what
 * it shares: w.base (the notifier's URL), w.defaults (the server's settings: `tracking`),
 * w.state (badges, latest proofs, viewer token, language), w.parts(proof, minCount) (a badge's
 * parts) and w.render(el, proof). It answers widget.js's hooks: parts (what a badge shows),
 * rendered (after a badge is drawn), mounted (a new badge), css, visitorId and flush.
 *
 * Visitor id: 16 random bytes (crypto.getRandomValues), base64url (22 characters), kept in the
 * shop's own localStorage `sp_vid` with its creation time and replaced after 30 days; not
 * linked to anything else (the viewer id travels only with a viewer token).
 *
 * Experiments: for each badge the widget asks GET /v1/products/{p}/experiment?visitor_id=V
 * (204: none; no answer within 3 s or an error: none, for this page view) and draws the assigned
 * variant: "none" draws nothing visible; "show" draws the listed elements in their order with
 * the variant's min_count as threshold. The badge waits for the answer (no flash of the default).
 * An impression means the badge's place was at least half on screen, the same for every variant:
 * a badge a variant leaves empty although the default badge would have shown something (always
 * the case for "none") stays there as an invisible placeholder (.sp-slot) whose visibility counts.
 *
 * Interactions: one impression per product and page view (IntersectionObserver, >= 50 % visible),
 * clicks on a badge, dismissals (its close button hides the product's badges for the page view).
 * A product's badges get data-socialproof-impression="1" once its impression is queued.
 * Each event is {kind, product_id, experiment_id?, variant?, at}; they are queued and sent with
 * navigator.sendBeacon (a text/plain JSON body: no CORS preflight) to POST /v1/beacons every 5 s,
 * when the page is hidden and on pagehide, at most 50 events and ~15 kB a request, a viewer token
 * as ?viewer_token= (a beacon cannot set headers); fetch(keepalive) when sendBeacon is missing or
 * refuses. Nothing of this (no id, no storage, no request) under Global Privacy Control
 * (navigator.globalPrivacyControl), Do Not Track ("1") or the shop's switch (defaults.tracking
 * false): then the default badge is drawn. The close button works either way.
 *
 * ES5, no dependencies, like widget.js.
 */
function socialproofExperiments(w) {
  var KEY = "sp_vid", ROTATE_MS = 30 * 86400000, FLUSH_MS = 5000, ASSIGN_TIMEOUT_MS = 3000;
  var MAX_EVENTS = 50, MAX_BYTES = 15000, MAX_QUEUE = 500;
  var ELEMENTS = ["friends", "bought", "reviews", "answered", "via"];
  var CLOSE = { en: "Hide this", es: "Ocultar" };
  var tracking = trackingAllowed();
  var visitor = tracking ? loadVisitor() : null;
  var assigned = {};   // product id -> its assignment, or null (no experiment); absent: asking
  var asking = {};     // product id -> true while its assignment is asked
  var impressed = {};  // product id -> true once its impression is queued (one per page view)
  var dismissed = {};  // product id -> true once the visitor closed its badge
  var queue = [];      // [{event, token}]
  var observer = tracking && window.IntersectionObserver
    ? new IntersectionObserver(onVisible, { threshold: [0.5] }) : null;

  function trackingAllowed() {
    var nav = window.navigator || {};
    if (w.defaults.tracking === false) return false;
    if (nav.globalPrivacyControl === true) return false;
    var dnt = nav.doNotTrack || window.doNotTrack || nav.msDoNotTrack;
    if (dnt === "1" || dnt === "yes") return false;
    return !!(window.crypto && window.crypto.getRandomValues && window.JSON);
  }

  function loadVisitor() {
    var now = Date.now(), stored = null;
    try { stored = JSON.parse(window.localStorage.getItem(KEY) || "null"); } catch (e) { stored = null; }
    if (stored && typeof stored.id === "string" && /^[A-Za-z0-9_-]{8,64}$/.test(stored.id) &&
        typeof stored.t === "number" && now - stored.t >= 0 && now - stored.t < ROTATE_MS) {
      return stored.id;
    }
    var id = randomId();
    // unavailable storage (private mode, blocked): an id for this page view only
    try { window.localStorage.setItem(KEY, JSON.stringify({ id: id, t: now })); } catch (e) { /* ok */ }
    return id;
  }

  function randomId() {
    var bytes = new Uint8Array(16), text = "";
    window.crypto.getRandomValues(bytes);
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  /* --- experiments ---------------------------------------------------------------------------- */

  function ask(productId) {
    if (productId in assigned || asking[productId]) return;
    asking[productId] = true;
    var timer = setTimeout(function () { settle(productId, null); }, ASSIGN_TIMEOUT_MS);
    fetch(w.base + "/v1/products/" + encodeURIComponent(productId) + "/experiment?visitor_id=" +
          encodeURIComponent(visitor), { credentials: "omit" }).then(function (r) {
      return r.status === 200 ? r.json() : null; // 204: no experiment covers the product
    }).then(function (a) {
      return a && a.experiment_id && a.variant ? a : null;
    }, function () { return null; }).then(function (a) {
      clearTimeout(timer);
      settle(productId, a);
    });
  }

  function settle(productId, assignment) {
    if (!asking[productId]) return; // answered late: the page view keeps what it showed
    delete asking[productId];
    assigned[productId] = assignment;
    var proof = w.state.latest[productId];
    (w.state.badges[productId] || []).forEach(function (el) {
      label(el, assignment);
      if (proof) w.render(el, proof);
    });
  }

  function label(el, a) {
    if (a) {
      el.setAttribute("data-socialproof-experiment", a.experiment_id);
      el.setAttribute("data-socialproof-variant", a.variant);
    } else {
      el.removeAttribute("data-socialproof-experiment");
      el.removeAttribute("data-socialproof-variant");
    }
  }

  /* The parts of the badge's variant, or null while its assignment is asked. */
  function variantParts(el, proof) {
    var productId = el.getAttribute("data-socialproof-product");
    if (!(productId in assigned)) return null;
    var a = assigned[productId], all = w.parts(proof);
    var own = !a ? all : a.badge === "none" ? [] : pick(w.parts(proof, a.min_count), a.elements);
    el.__spSlot = own.length === 0 && all.length > 0;
    return own;
  }

  /* parts in the order of `elements` (names of ELEMENTS; none: all, in the widget's order) */
  function pick(list, elements) {
    if (!elements || !elements.length) return list;
    var out = [];
    elements.forEach(function (name) {
      if (ELEMENTS.indexOf(name) < 0) return;
      list.forEach(function (part) { if (part.cls.split(" ")[0] === "sp-" + name) out.push(part); });
    });
    return out;
  }

  /* --- the badge: placeholder, close button, clicks, impressions ------------------------------ */

  function rendered(el, list) {
    var productId = el.getAttribute("data-socialproof-product");
    var slot = tracking && !!el.__spSlot && !dismissed[productId];
    el.classList.toggle("sp-slot", slot);
    if (slot) el.hidden = false;
    if (dismissed[productId]) el.hidden = true;
    var close = el.lastChild && el.lastChild.className === "sp-close" ? el.lastChild : null;
    if (!close && list.length) close = closeButton(el, productId);
    if (close) {
      close.hidden = !list.length;
      close.setAttribute("aria-label", CLOSE[w.state.lang] || CLOSE.en);
      close.title = CLOSE[w.state.lang] || CLOSE.en;
    }
  }

  function closeButton(el, productId) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "sp-close"; // its "×" is CSS: the badge's text stays the proof
    button.addEventListener("click", function (event) {
      event.stopPropagation();
      if (dismissed[productId]) return;
      dismissed[productId] = true;
      record("dismiss", productId);
      (w.state.badges[productId] || []).forEach(function (badge) { badge.hidden = true; });
    });
    el.appendChild(button);
    return button;
  }

  function mounted(el, productId) {
    if (el.__spTracked) return;
    el.__spTracked = true;
    if (!tracking) return;
    label(el, assigned[productId]);
    ask(productId);
    if (observer) observer.observe(el);
    el.addEventListener("click", function () {
      if (!el.hidden && !el.classList.contains("sp-slot")) record("click", productId);
    });
  }

  function onVisible(entries) {
    entries.forEach(function (entry) {
      var el = entry.target, productId = el.getAttribute("data-socialproof-product");
      if (!entry.isIntersecting || entry.intersectionRatio < 0.5 || el.hidden) return;
      if (impressed[productId] || dismissed[productId] || !(productId in assigned)) return;
      impressed[productId] = true;
      record("impression", productId);
      (w.state.badges[productId] || []).forEach(function (badge) {
        badge.setAttribute("data-socialproof-impression", "1"); // counted as seen (page view)
      });
    });
  }

  /* --- beacons -------------------------------------------------------------------------------- */

  function record(kind, productId) {
    if (!tracking) return;
    var a = assigned[productId];
    var event = { kind: kind, product_id: productId, at: new Date().toISOString() };
    if (a) {
      event.experiment_id = a.experiment_id;
      event.variant = a.variant;
    }
    // the token of the moment: events of one viewer never go out under another's token
    queue.push({ event: event, token: w.state.token || "" });
    if (queue.length > MAX_QUEUE) queue.splice(0, queue.length - MAX_QUEUE);
    if (queue.length >= MAX_EVENTS) flush();
  }

  function flush() {
    if (!queue.length) return;
    var byToken = {}, batch = queue;
    queue = [];
    batch.forEach(function (q) { (byToken[q.token] = byToken[q.token] || []).push(q); });
    Object.keys(byToken).forEach(function (token) {
      chunks(byToken[token]).forEach(function (entries) { send(token, entries); });
    });
  }

  function chunks(entries) {
    var out = [], current = [], size = 0;
    entries.forEach(function (q) {
      var n = JSON.stringify(q.event).length + 1;
      if (current.length && (current.length >= MAX_EVENTS || size + n > MAX_BYTES)) {
        out.push(current);
        current = [];
        size = 0;
      }
      current.push(q);
      size += n;
    });
    if (current.length) out.push(current);
    return out;
  }

  function send(token, entries) {
    var url = w.base + "/v1/beacons" + (token ? "?viewer_token=" + encodeURIComponent(token) : "");
    var events = entries.map(function (q) { return q.event; });
    var body = JSON.stringify({ visitor_id: visitor, events: events });
    try {
      if (navigator.sendBeacon && navigator.sendBeacon(url, new Blob([body], { type: "text/plain" }))) return;
    } catch (e) { /* fall back to fetch */ }
    if (!window.fetch) return;
    var again = function () { // once: the notifier drops a re-sent event as a duplicate
      entries.forEach(function (q) {
        if (!q.retried) queue.push({ event: q.event, token: token, retried: true });
      });
    };
    fetch(url, { method: "POST", body: body, keepalive: true, credentials: "omit",
                 headers: { "Content-Type": "text/plain" } }).then(function (r) {
      if (r.status === 429 || r.status >= 500) again();
    }, again);
  }

  if (tracking) {
    setInterval(flush, FLUSH_MS);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") flush();
    });
    window.addEventListener("pagehide", flush);
  }

  return {
    parts: tracking ? variantParts : null,
    rendered: rendered,
    mounted: mounted,
    visitorId: function () { return visitor; },
    flush: flush,
    css: ".sp-close{font:inherit;line-height:1;color:inherit;background:none;border:0;border-radius:50%;" +
         "padding:0 .1em;margin-left:auto;opacity:.55;cursor:pointer}.sp-close::before{content:\"\\00d7\"}" +
         ".sp-close:hover,.sp-close:focus-visible{opacity:1}.sp-close[hidden]{display:none}" +
         ".sp-badge.sp-slot{visibility:hidden;min-height:1.3em}",
  };
}
