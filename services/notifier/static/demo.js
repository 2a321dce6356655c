/* The demo storefront: cards with live badges (widget.js), a viewer switcher, a trending strip, a
 * recent-activity ticker, the viewer's own notifications (GET /v1/me/stream: questions asked
 * about what they bought) and a product page with its questions and answers, asked and answered
 * as the selected viewer (/demo/products/{id}/questions, dev only).
 * Share to unlock: the widget's card on product pages (and its offer on the cards); its share
 * button shares as the viewer (/demo/products/{id}/shares, dev only) and shows a link to this page
 * with ?ref=<link token>; buy buttons order as the viewer (/demo/orders, dev only), carrying the
 * ?ref= token this page was opened with as the order's referral and the widget's visitor id
 * (SocialProof.visitorId(): badge experiments attribute the purchase with it; none when the
 * browser asks not to be tracked).
 * ?products=a,b and ?viewers=u1,u2 override the demo catalog; ?open=p opens a product's page. */
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var names = {};      // product id -> name
  var people = {};     // viewer id -> name
  var viewer = "";     // the selected viewer ("" for a guest)
  var shown = null;    // the product whose page is open
  var products = [];
  var tokenTimer = null;
  var notes = { source: null, viewer: null, lastId: null };
  var lang = "en";
  var prices = {};     // product id -> price
  // the referral link this page was opened through: every order from here carries its token
  var referral = /^lk-[a-z2-7]{26}$/.test(params.get("ref") || "") ? params.get("ref") : null;
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
      var offer = el("div");
      offer.setAttribute("data-socialproof-share", p.id);
      offer.setAttribute("data-compact", "");
      card.appendChild(offer);
      var row = el("div", "buyrow");
      var buyButton = el("button", "buy", "Buy");
      buyButton.type = "button";
      var status = el("span", "buy-status muted");
      status.setAttribute("role", "status");
      buyButton.addEventListener("click", function () { buy(p.id, buyButton, status); });
      row.appendChild(buyButton);
      row.appendChild(status);
      card.appendChild(row);
      var more = el("button", "more", "Details, sharing, questions");
      more.type = "button";
      more.addEventListener("click", function () { openProduct(p.id); });
      card.appendChild(more);
      grid.appendChild(card);
    });
    SocialProof.scan();
  }

  function setViewer(viewerId) {
    clearTimeout(tokenTimer);
    viewer = viewerId || "";
    postable();
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

  /* The product page: its badge, its questions with ranked answers, and forms to ask and answer
   * as the selected viewer (through the demo's dev-only routes). */
  function openProduct(productId) {
    shown = productId;
    $("product-name").textContent = names[productId] || productId;
    var holder = $("product-badge");
    holder.textContent = "";
    var badge = el("div");
    badge.setAttribute("data-socialproof-product", productId);
    holder.appendChild(badge);
    var shareHolder = $("product-share");
    shareHolder.textContent = "";
    var card = el("div");
    card.setAttribute("data-socialproof-share", productId);
    shareHolder.appendChild(card);
    SocialProof.scan();
    $("product-buy-status").textContent = "";
    $("qa-status").textContent = "";
    $("questions").textContent = "";
    postable();
    var dialog = $("product");
    if (!dialog.open) dialog.show();  // not modal: the viewer switcher stays usable
    loadQuestions();
  }

  function postable() {
    var forms = document.querySelectorAll("#product form.post");
    for (var i = 0; i < forms.length; i++) {
      forms[i].querySelector("button").disabled = !viewer;
      forms[i].title = viewer ? "" : "choose a viewer to post";
    }
    var buttons = document.querySelectorAll("button.buy");
    for (var j = 0; j < buttons.length; j++) {
      buttons[j].disabled = !viewer;
      buttons[j].title = viewer ? "" : "choose a viewer to buy";
    }
  }

  /* Orders one as the viewer; the page's ?ref= token goes along as the referral. */
  function buy(productId, button, status) {
    if (!viewer) return;
    var body = { user_id: viewer, product_id: productId, unit_price: prices[productId] || "19.99" };
    if (referral) body.referral = referral;
    var visitor = SocialProof.visitorId ? SocialProof.visitorId() : null;
    if (visitor) body.visitor_id = visitor;
    button.disabled = true;
    status.textContent = "ordering…";
    fetch("/demo/orders", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": key() },
      body: JSON.stringify(body),
    }).then(function (r) {
      return r.json().then(function (answer) { return { ok: r.ok, body: answer }; });
    }).then(function (answer) {
      if (!answer.ok) throw new Error(answer.body.message || answer.body.error || "refused");
      status.textContent = "ordered" + (referral ? " (through a friend's link)" : "");
      status.setAttribute("data-order", answer.body.order_id || "");
    }).catch(function (e) {
      status.textContent = "not ordered: " + e.message;
    }).then(postable);
  }

  function key() {
    return window.crypto && crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
  }

  /* The widget's share button: a share as the viewer, and a link to this page with its token.
   * One link per viewer and product for the session (links are rate limited per user). */
  function shareAsViewer(productId) {
    if (!viewer) return Promise.reject(new Error("choose a viewer to share"));
    var cached = "sp-link|" + viewer + "|" + productId;
    var known = sessionStorage.getItem(cached);
    if (known) return Promise.resolve({ link: known });
    return fetch("/demo/products/" + encodeURIComponent(productId) + "/shares", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: viewer, channel: "link" }),
    }).then(function (r) {
      return r.json().then(function (answer) {
        if (!r.ok) throw new Error(answer.message || answer.error || "refused");
        if (!answer.link_token) throw new Error("the social service gave no link token");
        var link = location.origin + location.pathname + "?ref=" + encodeURIComponent(answer.link_token) +
          "&open=" + encodeURIComponent(productId);
        sessionStorage.setItem(cached, link);
        return { link: link, link_token: answer.link_token };
      });
    });
  }

  function loadQuestions() {
    var productId = shown;
    if (!productId) return Promise.resolve([]);
    return getJson("/demo/products/" + encodeURIComponent(productId) + "/questions").then(function (page) {
      if (shown !== productId) return [];
      renderQuestions(page.items || []);
      return page.items || [];
    }).catch(function (e) {
      $("qa-status").textContent = "questions are unavailable (" + e.message + ")";
      return [];
    });
  }

  function who(userId) { return people[userId] || userId; }

  function renderQuestions(items) {
    var list = $("questions");
    list.textContent = "";
    if (!items.length) list.appendChild(el("li", "muted", "No questions yet: ask the first one."));
    items.forEach(function (q) {
      var li = el("li");
      li.setAttribute("data-question", q.question_id);
      li.appendChild(el("div", "q", q.text));
      li.appendChild(el("div", "by", who(q.user_id) + " · " + ago(q.created_at)));
      var answers = el("ul", "answers");
      (q.answers || []).forEach(function (a) {
        var item = el("li");
        item.setAttribute("data-answer", a.answer_id);
        item.appendChild(document.createTextNode(a.text + " "));
        item.appendChild(el("span", "by", "— " + who(a.user_id)));
        if (a.verified) item.appendChild(el("span", "tag verified", "Verified buyer"));
        if (a.accepted) item.appendChild(el("span", "tag accepted", "Accepted"));
        if (a.helpful) item.appendChild(el("span", "by", " · " + a.helpful + " found it helpful"));
        answers.appendChild(item);
      });
      li.appendChild(answers);
      var form = el("form", "post");
      var input = el("input");
      input.name = "text";
      input.required = true;
      input.maxLength = 2000;
      input.placeholder = "Answer this question";
      input.setAttribute("aria-label", "Your answer");
      var button = el("button", null, "Answer");
      button.type = "submit";
      form.appendChild(input);
      form.appendChild(button);
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        post("/demo/questions/" + encodeURIComponent(q.question_id) + "/answers", input.value, "answer_id", form);
      });
      li.appendChild(form);
      list.appendChild(li);
    });
    postable();
  }

  /* Posts as the viewer, then reads the list again until the new post shows (the social service
   * folds it from its topic a moment later). */
  function post(url, text, idField, form) {
    if (!viewer) return;
    var status = $("qa-status");
    status.textContent = "posting…";
    form.querySelector("button").disabled = true;
    fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: viewer, text: text }),
    }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    }).then(function (answer) {
      if (!answer.ok) throw new Error(answer.body.message || answer.body.error || "refused");
      form.reset();
      var id = answer.body[idField];
      var tries = 0;
      (function poll() {
        loadQuestions().then(function () {
          if (document.querySelector('#questions [data-question="' + id + '"], #questions [data-answer="' + id + '"]')) {
            status.textContent = "posted";
          } else if (++tries < 20) {
            setTimeout(poll, 250);
          }
        });
      })();
    }).catch(function (e) {
      status.textContent = "not posted: " + e.message;
    }).then(postable);
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
    products.forEach(function (p) { names[p.id] = p.name; prices[p.id] = p.price; });
    (catalog.products || []).forEach(function (p) { names[p.id] = names[p.id] || p.name; });
    var viewers = params.get("viewers")
      ? params.get("viewers").split(",").filter(Boolean).map(function (id) { return { id: id, name: id }; })
      : catalog.viewers || [];
    var select = $("viewer");
    viewers.forEach(function (v) { people[v.id] = v.name; });
    (catalog.viewers || []).forEach(function (v) { people[v.id] = people[v.id] || v.name; });
    $("ask").addEventListener("submit", function (event) {
      event.preventDefault();
      post("/demo/products/" + encodeURIComponent(shown) + "/questions", $("ask").elements.text.value, "question_id", $("ask"));
    });
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
    SocialProof.setShareHandler(shareAsViewer);
    $("product-buy").addEventListener("click", function () {
      if (shown) buy(shown, $("product-buy"), $("product-buy-status"));
    });
    if (referral) $("referral").hidden = false;
    var visitor = SocialProof.visitorId ? SocialProof.visitorId() : null;
    $("visitor").textContent = visitor ? "visitor " + visitor
      : "not tracked (Global Privacy Control, Do Not Track or the shop's switch)";
    renderCards();
    var initial = params.get("viewer") || (viewers[0] && !params.get("viewers") ? viewers[0].id : "");
    select.value = initial;
    setViewer(initial);
    refreshTrending();
    refreshTicker();
    setInterval(refreshTrending, 5000);
    setInterval(refreshTicker, 5000);
    if (params.get("open")) openProduct(params.get("open"));
    document.body.setAttribute("data-ready", "1");
  }

  getJson("/demo/catalog").then(start).catch(function (e) {
    console.warn("catalog", e);
    start({ products: [], viewers: [] });
  });
})();
