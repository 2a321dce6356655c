/*
 * socialproof widget: live social-proof badges for a shop page. No dependencies, no CDN.
 *
 *   <script src="https://NOTIFIER/widget.js" data-product="p1" async></script>
 *
 * puts a badge such as "12 friends bought this · 340 bought in the last 24 h · ★4.6 from 120
 * verified reviews (+12 unverified) · 8 questions answered by buyers" right after the script tag
 * and keeps it up to date over one Server-Sent Events connection per page. Reviews are those of
 * verified buyers; the others are only counted, labelled as unverified.
 * Attributes of the script tag:
 *   data-product        product id of the badge placed after the tag (optional, see below)
 *   data-lang           "en" or "es" (default: the page's <html lang>, else English)
 *   data-min-count      counts below it are hidden (default: the server's setting)
 *   data-viewer-token   a viewer token from the shop's backend: adds "friends bought this"
 * Any element <div data-socialproof-product="p2"></div> becomes a badge too. From script:
 *   SocialProof.setViewerToken(token | null), SocialProof.setLang("es"), SocialProof.scan()
 * Each badge fires a "socialproof:update" DOM event (detail: the proof JSON) when it changes.
 */
(function () {
  "use strict";
  if (window.SocialProof) return; // loaded twice: the first copy serves the whole page

  var DEFAULTS = /*SOCIALPROOF_DEFAULTS*/{};
  var script = document.currentScript;
  var base = script ? script.src.replace(/\/widget\.js(\?.*)?$/, "") : "";
  var attr = function (name) { return script ? script.getAttribute(name) : null; };
  var state = {
    lang: pickLang(attr("data-lang") || document.documentElement.lang),
    minCount: Number(attr("data-min-count") || DEFAULTS.minCount || 1),
    token: attr("data-viewer-token"),
    badges: {},   // product id -> [elements]
    latest: {},   // product id -> last proof JSON
    source: null,
    reconnect: null,
  };
  var reducedMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)");

  var TEXT = {
    en: {
      friends: function (n, shown) { return n === 1 ? "1 friend bought this" : shown + " friends bought this"; },
      bought: function (n) { return n + " bought in the last 24 h"; },
      reviews: function (avg, n) { return "★" + avg + " (" + n + ")"; },
      verified: function (avg, n, one) { return "★" + avg + " from " + n + (one ? " verified review" : " verified reviews"); },
      unverified: function (n) { return "(+" + n + " unverified)"; },
      unverifiedOnly: function (avg, n, one, u) {
        return "★" + avg + " from " + n + (u === null ? (one ? " unverified review" : " unverified reviews") : (one ? " review (" : " reviews (") + u + " unverified)");
      },
      answered: function (n, one) { return n + (one ? " question answered by buyers" : " questions answered by buyers"); },
      decimal: ".",
    },
    es: {
      friends: function (n, shown) { return n === 1 ? "1 amigo lo compró" : shown + " amigos lo compraron"; },
      bought: function (n) { return n + " compras en las últimas 24 h"; },
      reviews: function (avg, n) { return "★" + avg + " (" + n + ")"; },
      verified: function (avg, n, one) { return "★" + avg + " de " + n + (one ? " reseña verificada" : " reseñas verificadas"); },
      unverified: function (n) { return "(+" + n + " sin verificar)"; },
      unverifiedOnly: function (avg, n, one, u) {
        return "★" + avg + " de " + n + (u === null ? (one ? " reseña sin verificar" : " reseñas sin verificar") : (one ? " reseña (" : " reseñas (") + u + " sin verificar)");
      },
      answered: function (n, one) { return n + (one ? " pregunta respondida por compradores" : " preguntas respondidas por compradores"); },
      decimal: ",",
    },
  };

  function pickLang(lang) {
    return String(lang || "en").toLowerCase().slice(0, 2) === "es" ? "es" : "en";
  }

  /* 999 -> "999", 2540 -> "2.5k+", 12345 -> "12k+", 3400000 -> "3.4M+" (rounded down, so "+"). */
  function round(n, lang) {
    if (n < 1000) return String(n);
    var unit = n < 1e6 ? "k" : "M";
    var value = n / (unit === "k" ? 1e3 : 1e6);
    var text = value < 10 ? String(Math.floor(value * 10) / 10) : String(Math.floor(value));
    return text.replace(".", TEXT[lang].decimal) + unit + "+";
  }

  function parts(proof) {
    var t = TEXT[state.lang], out = [];
    var friends = proof.friends_bought;
    if (friends && friends.count >= 1) {
      out.push({ cls: "sp-friends", text: t.friends(friends.count, round(friends.count, state.lang)),
                 title: (friends.names || []).join(", ") });
    }
    var bought = proof.bought && proof.bought["24h"];
    if (bought >= state.minCount) out.push({ cls: "sp-bought", text: t.bought(round(bought, state.lang)) });
    var review = reviewPart(proof.reviews, t);
    if (review) out.push(review);
    var answered = proof.questions && proof.questions.answered_by_buyers;
    if (answered >= Math.max(1, state.minCount)) {
      out.push({ cls: "sp-answered", text: t.answered(round(answered, state.lang), answered === 1) });
    }
    return out;
  }

  /* Verified buyers' reviews first; the others are counted and labelled, never mixed in unlabelled
   * (a server without the verified figures gets the plain "★4.6 (120)"). */
  function reviewPart(reviews, t) {
    if (!reviews) return null;
    var stars = function (avg) { return Number(avg).toFixed(1).replace(".", t.decimal); };
    var n = function (count) { return round(count, state.lang); };
    if (reviews.verified_count == null) {
      if (reviews.count >= state.minCount && reviews.average != null) {
        return { cls: "sp-reviews", text: t.reviews(stars(reviews.average), n(reviews.count)) };
      }
      return null;
    }
    var unverified = Math.max(0, reviews.count - reviews.verified_count);
    if (reviews.verified_count >= state.minCount && reviews.verified_average != null) {
      var text = t.verified(stars(reviews.verified_average), n(reviews.verified_count), reviews.verified_count === 1);
      if (unverified > 0) text += " " + t.unverified(n(unverified));
      return { cls: "sp-reviews sp-verified", text: text };
    }
    if (reviews.count >= state.minCount && reviews.average != null) {
      return { cls: "sp-reviews sp-unverified",
               // "from 12 unverified reviews", or "from 12 reviews (10 unverified)" when a few
               // (fewer than the threshold) are verified
               text: t.unverifiedOnly(stars(reviews.average), n(reviews.count), reviews.count === 1,
                                      reviews.verified_count > 0 ? n(unverified) : null) };
    }
    return null;
  }

  function render(el, proof) {
    var list = parts(proof);
    var text = list.map(function (p) { return p.text; }).join(" · ");
    el.hidden = list.length === 0;
    if (el.getAttribute("data-socialproof-text") === text) return; // nothing new to announce
    el.setAttribute("data-socialproof-text", text);
    el.textContent = "";
    list.forEach(function (p, i) {
      if (i) el.appendChild(span("sp-sep", " · "));
      var s = span("sp-part " + p.cls, p.text);
      if (p.title) s.title = p.title;
      el.appendChild(s);
    });
    if (!(reducedMotion && reducedMotion.matches) && el.getAttribute("data-socialproof-seen")) {
      el.classList.remove("sp-changed");
      void el.offsetWidth; // restart the animation
      el.classList.add("sp-changed");
    }
    el.setAttribute("data-socialproof-seen", "1");
  }

  function span(cls, text) {
    var s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }

  function mount(el, productId) {
    el.classList.add("sp-badge");
    el.setAttribute("role", "status");
    el.setAttribute("aria-live", "polite");
    el.setAttribute("data-socialproof-product", productId);
    el.hidden = true;
    var known = state.badges[productId] || (state.badges[productId] = []);
    if (known.indexOf(el) < 0) known.push(el);
    if (state.latest[productId]) render(el, state.latest[productId]);
    schedule();
    return el;
  }

  function scan() {
    var els = document.querySelectorAll("[data-socialproof-product]");
    for (var i = 0; i < els.length; i++) {
      var id = els[i].getAttribute("data-socialproof-product");
      if (id && !els[i].classList.contains("sp-badge")) mount(els[i], id);
    }
  }

  function schedule() { // many mounts in a row open one connection
    clearTimeout(state.reconnect);
    state.reconnect = setTimeout(connect, 0);
  }

  function connect() {
    if (state.source) state.source.close();
    state.source = null;
    var ids = Object.keys(state.badges);
    if (!ids.length) return;
    var url = base + "/v1/proof/stream?products=" + encodeURIComponent(ids.slice(0, 100).join(","));
    if (state.token) url += "&viewer_token=" + encodeURIComponent(state.token);
    var source = new EventSource(url);
    state.source = source;
    source.addEventListener("proof", function (event) {
      var proof = JSON.parse(event.data);
      state.latest[proof.product_id] = proof;
      (state.badges[proof.product_id] || []).forEach(function (el) {
        render(el, proof);
        el.dispatchEvent(new CustomEvent("socialproof:update", { detail: proof, bubbles: true }));
      });
    });
    source.onerror = function () {
      // The browser retries by itself (with Last-Event-ID) unless the server refused us
      // (e.g. an expired viewer token): then tell the page and try again a little later.
      if (source.readyState === EventSource.CLOSED && state.source === source) {
        document.dispatchEvent(new CustomEvent("socialproof:error", { detail: { url: url } }));
        state.reconnect = setTimeout(connect, 5000);
      }
    };
  }

  var css =
    ".sp-badge{display:inline-flex;flex-wrap:wrap;gap:.25em;align-items:center;font:500 .9rem/1.4 system-ui,sans-serif;" +
    "color:#1d3b2a;background:#e9f7ef;border:1px solid #bfe5cf;border-radius:999px;padding:.2em .75em}" +
    ".sp-badge[hidden]{display:none}.sp-friends{font-weight:700;color:#0b5d33}.sp-sep{opacity:.6}" +
    ".sp-changed{animation:sp-flash .9s ease-out}" +
    "@keyframes sp-flash{0%{background:#fff3b0;transform:scale(1.04)}100%{background:#e9f7ef;transform:none}}" +
    "@media (prefers-reduced-motion: reduce){.sp-changed{animation:none}}";
  var style = document.createElement("style");
  style.setAttribute("data-socialproof", "");
  style.textContent = css;
  document.head.appendChild(style);

  window.SocialProof = {
    mount: mount,
    scan: scan,
    setViewerToken: function (token) { state.token = token || null; schedule(); },
    setLang: function (lang) {
      state.lang = pickLang(lang);
      Object.keys(state.latest).forEach(function (id) {
        (state.badges[id] || []).forEach(function (el) { render(el, state.latest[id]); });
      });
    },
    format: round,
    latest: function (id) { return state.latest[id]; },
  };

  var product = attr("data-product");
  if (product && script.parentNode) {
    var el = document.createElement("div");
    script.parentNode.insertBefore(el, script.nextSibling);
    mount(el, product);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
})();
