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
 *
 * Share to unlock: <div data-socialproof-share="p1"></div> becomes a card when the product has an
 * active promotion ("Share with friends: 10% off when 3 of them buy"); data-compact shows the
 * offer only. Its share button calls the page's handler, which creates the share in the shop's
 * backend and resolves to {link}:
 *   SocialProof.setShareHandler(function (productId, promotions) { return fetch(…)… })
 * With a viewer token the card shows the viewer's progress live ("Your link brought 1 buyer, 2
 * more to unlock 10% off", then the coupon) over /v1/me/stream; each change fires
 * "socialproof:progress" on the card (detail: the progress JSON).
 *
 * Experiments and interactions (widget-experiments.js, served inside this file by the notifier):
 * each badge shows the variant of a running experiment this visitor is assigned to, a small
 * close button dismisses it, and impressions, clicks and dismissals go to the notifier in
 * batches (navigator.sendBeacon) under a pseudonymous, rotating visitor id; none of that under
 * Global Privacy Control, Do Not Track or the shop's switch. SocialProof.visitorId() is the id
 * for the shop's checkout to put on its orders (null when not tracking).
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
    shares: {},    // product id -> [share cards]
    promos: {},    // product id -> its active promotions
    progress: {},  // promotion id -> the viewer's progress
    links: {},     // product id -> the viewer's share link
    shareHandler: null,
    me: null,      // the viewer's own stream (progress), and its URL
    meUrl: null,
    meRetry: null,
  };
  var hooks = {};  // experiments and interactions (widget-experiments.js), set below
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
      via: function (n, one) { return n + " bought through friends' shares (24 h)"; },
      percentOff: function (v) { return v + "% off"; },
      fixedOff: function (amount) { return amount + " off"; },
      offer: function (reward, goal) {
        return "Share with friends: " + reward + " when " + (goal === 1 ? "1 of them buys" : goal + " of them buy");
      },
      buyerOffer: function (reward) { return "Friends who buy through your link get " + reward; },
      share: "Share", copy: "Copy", copied: "Copied", sharing: "Creating your link…",
      shareFailed: function (why) { return "No link this time: " + why; },
      buyers: function (n, names) {
        return n + (n === 1 ? " buyer" : " buyers") + (names.length ? " (" + names.join(", ") + ")" : "");
      },
      progress: function (buyers, k, reward) { return "Your link brought " + buyers + ", " + k + " more to unlock " + reward; },
      reached: function (buyers) { return "Your link brought " + buyers + ": goal reached"; },
      none: "No friend bought through your link yet",
      unlocked: function (coupon, reward) { return "Unlocked: coupon " + coupon + " (" + reward + ")"; },
      redeemed: function (coupon) { return "Coupon " + coupon + " used: thanks for sharing"; },
      buyerReward: function (coupon, reward) { return "Your reward for buying through a friend's link: coupon " + coupon + " (" + reward + ")"; },
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
      via: function (n, one) { return n + (one ? " compró" : " compraron") + " por enlaces de amigos (24 h)"; },
      percentOff: function (v) { return v + " % de descuento"; },
      fixedOff: function (amount) { return amount + " de descuento"; },
      offer: function (reward, goal) {
        return "Compártelo con amigos: " + reward + " cuando " + (goal === 1 ? "1 de ellos compre" : goal + " de ellos compren");
      },
      buyerOffer: function (reward) { return "Tus amigos que compren con tu enlace obtienen " + reward; },
      share: "Compartir", copy: "Copiar", copied: "Copiado", sharing: "Creando tu enlace…",
      shareFailed: function (why) { return "No se pudo crear el enlace: " + why; },
      buyers: function (n, names) {
        return n + (n === 1 ? " comprador" : " compradores") + (names.length ? " (" + names.join(", ") + ")" : "");
      },
      progress: function (buyers, k, reward) { return "Tu enlace trajo " + buyers + "; faltan " + k + " para desbloquear " + reward; },
      reached: function (buyers) { return "Tu enlace trajo " + buyers + ": objetivo cumplido"; },
      none: "Ningún amigo ha comprado con tu enlace todavía",
      unlocked: function (coupon, reward) { return "Desbloqueado: cupón " + coupon + " (" + reward + ")"; },
      redeemed: function (coupon) { return "Cupón " + coupon + " usado: gracias por compartir"; },
      buyerReward: function (coupon, reward) { return "Tu premio por comprar con el enlace de un amigo: cupón " + coupon + " (" + reward + ")"; },
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

  /* minCount: an experiment variant's threshold (default: the widget's) */
  function parts(proof, minCount) {
    var t = TEXT[state.lang], out = [], min = minCount == null ? state.minCount : minCount;
    var friends = proof.friends_bought;
    if (friends && friends.count >= 1) {
      out.push({ cls: "sp-friends", text: t.friends(friends.count, round(friends.count, state.lang)),
                 title: (friends.names || []).join(", ") });
    }
    var bought = proof.bought && proof.bought["24h"];
    if (bought >= min) out.push({ cls: "sp-bought", text: t.bought(round(bought, state.lang)) });
    var via = proof.bought_via_shares && proof.bought_via_shares["24h"];
    if (via > 0) out.push({ cls: "sp-via", text: t.via(round(via, state.lang), via === 1) });
    var review = reviewPart(proof.reviews, t, min);
    if (review) out.push(review);
    var answered = proof.questions && proof.questions.answered_by_buyers;
    if (answered >= Math.max(1, min)) {
      out.push({ cls: "sp-answered", text: t.answered(round(answered, state.lang), answered === 1) });
    }
    return out;
  }

  /* Verified buyers' reviews first; the others are counted and labelled, never mixed in unlabelled
   * (a server without the verified figures gets the plain "★4.6 (120)"). */
  function reviewPart(reviews, t, min) {
    if (!reviews) return null;
    var stars = function (avg) { return Number(avg).toFixed(1).replace(".", t.decimal); };
    var n = function (count) { return round(count, state.lang); };
    if (reviews.verified_count == null) {
      if (reviews.count >= min && reviews.average != null) {
        return { cls: "sp-reviews", text: t.reviews(stars(reviews.average), n(reviews.count)) };
      }
      return null;
    }
    var unverified = Math.max(0, reviews.count - reviews.verified_count);
    if (reviews.verified_count >= min && reviews.verified_average != null) {
      var text = t.verified(stars(reviews.verified_average), n(reviews.verified_count), reviews.verified_count === 1);
      if (unverified > 0) text += " " + t.unverified(n(unverified));
      return { cls: "sp-reviews sp-verified", text: text };
    }
    if (reviews.count >= min && reviews.average != null) {
      return { cls: "sp-reviews sp-unverified",
               // "from 12 unverified reviews", or "from 12 reviews (10 unverified)" when a few
               // (fewer than the threshold) are verified
               text: t.unverifiedOnly(stars(reviews.average), n(reviews.count), reviews.count === 1,
                                      reviews.verified_count > 0 ? n(unverified) : null) };
    }
    return null;
  }

  function render(el, proof) {
    var list = hooks.parts ? hooks.parts(el, proof) : parts(proof);
    if (!list) return; // the badge's experiment variant is not known yet
    var text = list.map(function (p) { return p.text; }).join(" · ");
    el.hidden = list.length === 0;
    if (el.getAttribute("data-socialproof-text") !== text) { // else nothing new to announce
      el.setAttribute("data-socialproof-text", text);
      var keep = el.lastChild && el.lastChild.className === "sp-close" ? el.lastChild : null;
      while (el.firstChild !== keep) el.removeChild(el.firstChild); // the close button stays
      list.forEach(function (p, i) {
        if (i) el.insertBefore(span("sp-sep", " · "), keep);
        var s = span("sp-part " + p.cls, p.text);
        if (p.title) s.title = p.title;
        el.insertBefore(s, keep);
      });
      if (!(reducedMotion && reducedMotion.matches) && el.getAttribute("data-socialproof-seen")) {
        el.classList.remove("sp-changed");
        void el.offsetWidth; // restart the animation
        el.classList.add("sp-changed");
      }
      el.setAttribute("data-socialproof-seen", "1");
    }
    if (hooks.rendered) hooks.rendered(el, list);
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
    if (hooks.mounted) hooks.mounted(el, productId);
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
    var cards = document.querySelectorAll("[data-socialproof-share]");
    for (var j = 0; j < cards.length; j++) {
      var pid = cards[j].getAttribute("data-socialproof-share");
      if (pid && !cards[j].classList.contains("sp-share")) mountShare(cards[j], pid);
    }
  }

  /* --- share to unlock ------------------------------------------------------------------------ */

  function rewardText(reward) {
    var t = TEXT[state.lang], value = Number(reward.value);
    if (reward.kind === "percent") return t.percentOff(String(value).replace(".", t.decimal));
    var amount = String(value);
    if (reward.currency && window.Intl) {
      try {
        amount = new Intl.NumberFormat(state.lang === "es" ? "es-ES" : "en-US",
          { style: "currency", currency: reward.currency }).format(value);
      } catch (e) { amount = value + " " + reward.currency; }
    }
    return t.fixedOff(amount);
  }

  function mountShare(el, productId) {
    el.classList.add("sp-share");
    el.setAttribute("data-socialproof-share", productId);
    el.hidden = true;
    var known = state.shares[productId] || (state.shares[productId] = []);
    if (known.indexOf(el) < 0) known.push(el);
    if (state.promos[productId]) renderShare(el, productId);
    else loadPromotions(productId);
    return el;
  }

  function loadPromotions(productId) {
    return fetch(base + "/v1/products/" + encodeURIComponent(productId) + "/promotions").then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.json();
    }).then(function (body) {
      state.promos[productId] = body.promotions || [];
      renderShares(productId);
      clearTimeout(state.meRetry);  // cards loading one after the other open one stream
      state.meRetry = setTimeout(followProgress, 100);
    }).catch(function () {});
  }

  function renderShares(productId) {
    (state.shares[productId] || []).forEach(function (el) { renderShare(el, productId); });
  }

  function renderShare(el, productId) {
    var t = TEXT[state.lang], promos = state.promos[productId] || [];
    el.hidden = promos.length === 0;
    if (!promos.length) return;
    var parts = el.__sp;
    if (!parts) {
      el.textContent = "";
      parts = el.__sp = { offers: span("sp-offers", ""), button: document.createElement("button"),
                          link: span("sp-link", ""), input: document.createElement("input"),
                          copy: document.createElement("button"), status: span("sp-share-status", ""),
                          progress: span("sp-progresses", "") };
      parts.button.type = parts.copy.type = "button";
      parts.button.className = "sp-share-button";
      parts.copy.className = "sp-copy";
      parts.input.readOnly = true;
      parts.input.className = "sp-link-input";
      parts.link.appendChild(parts.input);
      parts.link.appendChild(parts.copy);
      parts.progress.setAttribute("role", "status");
      parts.progress.setAttribute("aria-live", "polite");
      parts.button.addEventListener("click", function () { share(el, productId); });
      parts.copy.addEventListener("click", function () { copy(el, productId); });
      [parts.offers, parts.button, parts.link, parts.status, parts.progress].forEach(function (p) { el.appendChild(p); });
    }
    parts.offers.textContent = "";
    promos.forEach(function (promo) {
      var offer = span("sp-offer", "");
      if (promo.title) offer.appendChild(span("sp-offer-title", promo.title + " "));
      offer.appendChild(span("sp-offer-text", t.offer(rewardText(promo.sharer_reward), promo.goal.buyers)));
      parts.offers.appendChild(offer);
      if (promo.buyer_reward) parts.offers.appendChild(span("sp-buyer-offer", t.buyerOffer(rewardText(promo.buyer_reward))));
    });
    var compact = el.hasAttribute("data-compact");
    var link = state.links[productId];
    parts.button.textContent = t.share;
    parts.button.hidden = compact || !state.shareHandler;
    parts.link.hidden = compact || !link;
    parts.input.value = link || "";
    parts.copy.textContent = t.copy;
    parts.progress.textContent = "";
    if (compact || !state.token) return;
    promos.forEach(function (promo) {
      var text = progressText(promo, state.progress[promo.id], !!link);
      if (!text) return;
      var line = span("sp-progress", text);
      line.setAttribute("data-promotion", promo.id);
      parts.progress.appendChild(line);
    });
  }

  function progressText(promo, progress, shared) {
    var t = TEXT[state.lang];
    if (!progress) return shared ? t.none : "";
    var rewards = progress.rewards || [];
    var mine = rewards.filter(function (r) { return r.role === "sharer"; })[0];
    var bought = rewards.filter(function (r) { return r.role === "buyer" && r.status === "earned"; })[0];
    var lines = [];
    if (mine && mine.status === "earned") lines.push(t.unlocked(mine.coupon, rewardText(promo.sharer_reward)));
    else if (mine && mine.status === "redeemed") lines.push(t.redeemed(mine.coupon));
    else if (progress.buyers > 0) {
      var buyers = t.buyers(progress.buyers, progress.named_buyers || []);
      lines.push(progress.remaining > 0 ? t.progress(buyers, progress.remaining, rewardText(promo.sharer_reward)) : t.reached(buyers));
    } else if (shared) lines.push(t.none);
    if (bought && promo.buyer_reward) lines.push(t.buyerReward(bought.coupon, rewardText(promo.buyer_reward)));
    return lines.join(" · ");
  }

  function share(el, productId) {
    var t = TEXT[state.lang], parts = el.__sp;
    if (!state.shareHandler) return;
    parts.status.textContent = t.sharing;
    parts.button.disabled = true;
    Promise.resolve().then(function () {
      return state.shareHandler(productId, state.promos[productId] || []);
    }).then(function (answer) {
      if (!answer || !answer.link) throw new Error("no link");
      state.links[productId] = answer.link;
      parts.status.textContent = "";
      renderShares(productId);
    }).catch(function (e) {
      parts.status.textContent = t.shareFailed(e && e.message ? e.message : String(e));
    }).then(function () { parts.button.disabled = false; });
  }

  function copy(el, productId) {
    var parts = el.__sp, link = state.links[productId];
    var done = function () { parts.status.textContent = TEXT[state.lang].copied; };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(link).then(done, function () { parts.input.select(); });
    } else {
      parts.input.select();
      if (document.execCommand && document.execCommand("copy")) done();
    }
  }

  /* The viewer a token names (its payload is readable; only the server checks the signature). */
  function viewerOf(token) {
    try {
      return JSON.parse(atob(String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub;
    } catch (e) { return null; }
  }

  /* The viewer's progress in the promotions the cards show, over the viewer's own stream. */
  function followProgress() {
    clearTimeout(state.meRetry);
    var ids = [];
    Object.keys(state.shares).forEach(function (p) {
      (state.promos[p] || []).forEach(function (promo) { if (ids.indexOf(promo.id) < 0) ids.push(promo.id); });
    });
    var url = state.token && ids.length
      ? base + "/v1/me/stream?viewer_token=" + encodeURIComponent(state.token) +
        "&promotions=" + encodeURIComponent(ids.slice(0, 20).join(","))
      : null;
    if (url === state.meUrl && state.me) return;
    if (state.me) state.me.close();
    state.me = null;
    state.meUrl = url;
    if (!url) return;
    var source = new EventSource(url);
    state.me = source;
    source.addEventListener("progress", function (event) {
      var progress = JSON.parse(event.data);
      state.progress[progress.promotion_id] = progress;
      Object.keys(state.shares).forEach(function (p) {
        if ((state.promos[p] || []).some(function (promo) { return promo.id === progress.promotion_id; })) {
          renderShares(p);
          state.shares[p].forEach(function (el) {
            el.dispatchEvent(new CustomEvent("socialproof:progress", { detail: progress, bubbles: true }));
          });
        }
      });
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED && state.me === source) {
        state.me = null;
        state.meRetry = setTimeout(followProgress, 5000);
      }
    };
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

  /*SOCIALPROOF_EXPERIMENTS*/
  if (typeof socialproofExperiments === "function") {
    hooks = socialproofExperiments({ base: base, defaults: DEFAULTS, state: state, parts: parts, render: render });
  }

  var css =
    ".sp-badge{display:inline-flex;flex-wrap:wrap;gap:.25em;align-items:center;font:500 .9rem/1.4 system-ui,sans-serif;" +
    "color:#1d3b2a;background:#e9f7ef;border:1px solid #bfe5cf;border-radius:999px;padding:.2em .75em}" +
    ".sp-badge[hidden]{display:none}.sp-friends{font-weight:700;color:#0b5d33}.sp-sep{opacity:.6}" +
    ".sp-changed{animation:sp-flash .9s ease-out}.sp-via{color:#0b5d33}" +
    ".sp-share{display:flex;flex-direction:column;gap:.35em;font:.9rem/1.4 system-ui,sans-serif;color:#3b2a05;" +
    "background:#fff7e0;border:1px solid #f1d48a;border-radius:10px;padding:.5em .75em}.sp-share[hidden],.sp-share [hidden]{display:none}" +
    ".sp-offer,.sp-buyer-offer,.sp-progress{display:block}.sp-offer-title{font-weight:700}.sp-buyer-offer{font-size:.85em}" +
    ".sp-share-button,.sp-copy{align-self:flex-start;font:inherit;font-weight:600;border:0;border-radius:6px;padding:.25em .8em;" +
    "background:#c77800;color:#fff;cursor:pointer}.sp-share-button:disabled{opacity:.6}" +
    ".sp-link{display:flex;gap:.35em}.sp-link-input{flex:1;min-width:0;font:inherit;font-size:.85em;padding:.2em .4em}" +
    ".sp-progress{font-weight:600;color:#0b5d33}.sp-share-status{font-size:.85em}" +
    "@keyframes sp-flash{0%{background:#fff3b0;transform:scale(1.04)}100%{background:#e9f7ef;transform:none}}" +
    "@media (prefers-reduced-motion: reduce){.sp-changed{animation:none}}";
  var style = document.createElement("style");
  style.setAttribute("data-socialproof", "");
  style.textContent = css + (hooks.css || "");
  document.head.appendChild(style);

  window.SocialProof = {
    mount: mount,
    scan: scan,
    mountShare: mountShare,
    setViewerToken: function (token) {
      if (viewerOf(token) !== viewerOf(state.token)) {  // another viewer: nothing of theirs stays
        state.progress = {};
        state.links = {};
      }
      state.token = token || null;
      schedule();
      Object.keys(state.shares).forEach(renderShares);
      followProgress();
    },
    setShareHandler: function (handler) {
      state.shareHandler = typeof handler === "function" ? handler : null;
      Object.keys(state.shares).forEach(renderShares);
    },
    setLang: function (lang) {
      state.lang = pickLang(lang);
      Object.keys(state.latest).forEach(function (id) {
        (state.badges[id] || []).forEach(function (el) { render(el, state.latest[id]); });
      });
      Object.keys(state.shares).forEach(renderShares);
    },
    progress: function (promotionId) { return state.progress[promotionId]; },
    format: round,
    latest: function (id) { return state.latest[id]; },
    /* the pseudonymous visitor id for the shop's orders (`visitor_id`); null when not tracking */
    visitorId: function () { return hooks.visitorId ? hooks.visitorId() : null; },
    /* send the queued interactions now (they also go every few seconds and when the page hides) */
    flush: function () { if (hooks.flush) hooks.flush(); },
  };

  var product = attr("data-product");
  if (product && script.parentNode) {
    var el = document.createElement("div");
    script.parentNode.insertBefore(el, script.nextSibling);
    mount(el, product);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
  // promotions start and end: look again now and then
  setInterval(function () { Object.keys(state.shares).forEach(loadPromotions); }, 60000);
})();
