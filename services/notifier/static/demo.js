/* The demo storefront: cards with live badges (widget.js), a viewer switcher, a trending strip, a
 * recent-activity ticker and the viewer's own notifications (GET /v1/me/stream: questions asked
 * about what they bought). ?products=a,b and ?viewers=u1,u2 override the demo catalog. */
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var names = {};      // product id -> name
  var products = [];
  var tokenTimer = null;
  var notes = { source: null, viewer: null, lastId: null };
  var lang = "en";
  var PALETTE = ["#ffe3d3", "#dff3e4", "#e2e9ff", "#fff2c9", "#f4e1ff", "#d9f4f7"];
  var ACTIONS = {
    en: { purchase: "bought", bought: "bought", review: "reviewed", reviewed: "reviewed", share: "shared", shared: "shared" },
    es: { purchase: "compró", bought: "compró", review: "valoró", reviewed: "valoró", share: "compartió", shared: "compartió" },
  };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function getJson(url, options) {
    return fetch(url, options).then(function (r) {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.json();
    });
  }

  function renderCards() {
    var grid = $("products");
    grid.textContent = "";
    products.forEach(function (p, i) {
      var card = el("article", "card");
      card.setAttribute("data-product", p.id);
      // initials, not emoji: no icon font or image host is needed to look right
      var initials = p.name.split(/\s+/).slice(0, 2).map(function (w) { return w.charAt(0); }).join("");
      var art = el("div", "art", initials.toUpperCase());
      art.style.background = PALETTE[i % PALETTE.length];
      art.setAttribute("aria-hidden", "true");
      card.appendChild(art);
      card.appendChild(el("h3", null, p.name));
      if (p.price) card.appendChild(el("div", "price", "€" + p.price));
      var badge = el("div");
      badge.setAttribute("data-socialproof-product", p.id);
      card.appendChild(badge);
      grid.appendChild(card);
    });
    SocialProof.scan();
  }

  function setViewer(viewerId) {
    clearTimeout(tokenTimer);
    document.body.setAttribute("data-viewer", "");
    if (!viewerId) {
      SocialProof.setViewerToken(null);
      followNotes(null, null);
      document.body.setAttribute("data-viewer", "guest");
      return;
    }
    getJson("/demo/viewer-tokens", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ viewer_id: viewerId }),
    }).then(function (t) {
      SocialProof.setViewerToken(t.token);
      followNotes(viewerId, t.token);
      document.body.setAttribute("data-viewer", viewerId);
      // renew a minute before it expires
      var ms = Math.max(30000, new Date(t.expires_at) - Date.now() - 60000);
      tokenTimer = setTimeout(function () { setViewer(viewerId); }, ms);
    }).catch(function (e) { console.warn("viewer token", e); });
  }

  /* The viewer's own notifications. A renewed token opens a new stream that goes on from the last
   * id seen (an EventSource sends Last-Event-ID only when it reconnects by itself). */
  function followNotes(viewerId, token) {
    if (notes.source) notes.source.close();
    notes.source = null;
    document.body.removeAttribute("data-notes");
    if (viewerId !== notes.viewer) {
      notes.viewer = viewerId;
      notes.lastId = null;
      var list = $("notes");
      list.textContent = "";
      list.appendChild(el("li", "muted", viewerId ? "questions about what you bought show here" : "choose a viewer"));
    }
    if (!token) return;
    var url = "/v1/me/stream?viewer_token=" + encodeURIComponent(token);
    if (notes.lastId) url += "&last_event_id=" + encodeURIComponent(notes.lastId);
    var source = new EventSource(url);
    notes.source = source;
    source.addEventListener("ready", function (event) {
      notes.lastId = event.lastEventId || notes.lastId;
      document.body.setAttribute("data-notes", viewerId);  // live (tests wait for it)
    });
    source.addEventListener("note", function (event) {
      notes.lastId = event.lastEventId || notes.lastId;
      var note = JSON.parse(event.data);
      var list = $("notes");
      var placeholder = list.querySelector(".muted");
      if (placeholder) placeholder.remove();
      var li = el("li", "new");
      li.setAttribute("data-question", note.question_id);
      var what = names[note.product_id] || note.product_id;
      li.appendChild(document.createTextNode(
        lang === "es" ? "Nueva pregunta sobre " + what : "New question about " + what));
      li.appendChild(el("time", null, ago(note.at)));
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 10) list.removeChild(list.lastChild);
    });
  }

  function refreshTrending() {
    getJson("/v1/trending?limit=10").then(function (body) {
      var list = $("trending");
      var items = body.products || [];
      if (!items.length) return;
      list.textContent = "";
      items.forEach(function (item) {
        var li = el("li");
        li.appendChild(el("b", null, "#" + item.rank));
        li.appendChild(document.createTextNode(names[item.product_id] || item.product_id));
        list.appendChild(li);
      });
    }).catch(function () {});
  }

  function ago(iso) {
    var s = Math.max(0, Math.round((Date.now() - new Date(iso)) / 1000));
    if (lang === "es") return s < 60 ? "hace " + s + " s" : s < 3600 ? "hace " + Math.floor(s / 60) + " min" : "hace " + Math.floor(s / 3600) + " h";
    return s < 60 ? s + " s ago" : s < 3600 ? Math.floor(s / 60) + " min ago" : Math.floor(s / 3600) + " h ago";
  }

  var seen = {};
  function refreshTicker() {
    if (!products.length) return;
    var ids = products.map(function (p) { return p.id; }).join(",");
    getJson("/v1/activity?limit=12&products=" + encodeURIComponent(ids)).then(function (body) {
      var items = body.items || [];
      if (!items.length) return;
      var list = $("ticker");
      list.textContent = "";
      items.forEach(function (item) {
        var who = item.first_name || item.name || item.user || "Someone";
        var kind = item.kind || item.type || item.action || "purchase";
        var verb = ACTIONS[lang][kind] || kind;
        var key = [who, kind, item.product_id, item.occurred_at].join("|");
        var li = el("li", seen[key] ? null : "new");
        seen[key] = true;
        li.appendChild(document.createTextNode(who + " " + verb + " " + (names[item.product_id] || item.product_id)));
        if (item.occurred_at) li.appendChild(el("time", null, ago(item.occurred_at)));
        list.appendChild(li);
      });
    }).catch(function () {});
  }

  var tickerSoon = null;
  document.addEventListener("socialproof:update", function () {
    clearTimeout(tickerSoon);
    tickerSoon = setTimeout(refreshTicker, 400);
  });

  function start(catalog) {
    var override = params.get("products");
    products = override
      ? override.split(",").filter(Boolean).map(function (id) { return { id: id, name: id }; })
      : catalog.products || [];
    products.forEach(function (p) { names[p.id] = p.name; });
    (catalog.products || []).forEach(function (p) { names[p.id] = names[p.id] || p.name; });
    var viewers = params.get("viewers")
      ? params.get("viewers").split(",").filter(Boolean).map(function (id) { return { id: id, name: id }; })
      : catalog.viewers || [];
    var select = $("viewer");
    viewers.forEach(function (v) {
      var o = el("option", null, v.name + (v.name !== v.id ? " (" + v.id + ")" : ""));
      o.value = v.id;
      select.appendChild(o);
    });
    select.addEventListener("change", function () { setViewer(select.value); });
    $("lang").addEventListener("change", function () {
      lang = $("lang").value;
      document.documentElement.lang = lang;
      SocialProof.setLang(lang);
      refreshTicker();
    });
    renderCards();
    var initial = params.get("viewer") || (viewers[0] && !params.get("viewers") ? viewers[0].id : "");
    select.value = initial;
    setViewer(initial);
    refreshTrending();
    refreshTicker();
    setInterval(refreshTrending, 5000);
    setInterval(refreshTicker, 5000);
    document.body.setAttribute("data-ready", "1");
  }

  getJson("/demo/catalog").then(start).catch(function (e) {
    console.warn("catalog", e);
    start({ products: [], viewers: [] });
  });
})();
