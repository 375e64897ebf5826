/* Live pages (SPEC §8): the gateway pushes each change of an offer as a server-sent event
   (gateway/streams.py); this script applies it to the page. Only a browser without EventSource
   polls the API instead. The pages work without this script: it only keeps them current. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var CHART_W = 300, CHART_H = 140, LEFT = 60;  // as services/catalog/pages.py draws it
  // The page's words in its language (the templates' live_words()): `{name}` is where a value goes.
  var WORDS = JSON.parse((document.getElementById("cobuy-words") || {}).textContent || "{}");
  var LANG = WORDS.lang || document.documentElement.lang || "en";
  var plurals = new Intl.PluralRules(LANG);

  function word(key, fallback) { return WORDS[key] !== undefined ? WORDS[key] : fallback; }
  function plural(key, n) {
    var forms = WORDS[key] || {};
    return forms[plurals.select(n)] || forms.other || "";
  }
  // A sentence with its values put in: nodes stay nodes (never markup), anything else becomes text.
  function fill(template, values) {
    return String(template).split(/(\{[a-z]+\})/).filter(Boolean).map(function (part) {
      var name = part.charAt(0) === "{" ? part.slice(1, -1) : null;
      if (name === null || !(name in values)) return document.createTextNode(part);
      var value = values[name];
      return value instanceof Node ? value : document.createTextNode(String(value));
    });
  }
  function fillText(template, values) {
    return fill(template, values).map(function (n) { return n.textContent; }).join("");
  }

  function money(minor, currency) {
    try {
      var f = new Intl.NumberFormat(LANG, {style: "currency", currency: currency.toUpperCase()});
      return f.format(minor / Math.pow(10, f.resolvedOptions().maximumFractionDigits));
    } catch (e) { return String(minor); }
  }
  function pct(o) {
    return Math.min(100, Math.round(100 * o.reservation_count / o.condition.minimum_reservations)) + "%";
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;  // text, never markup: titles and names are typed by users
    return node;
  }
  function set(root, selector, text) {
    var node = root.querySelector(selector);
    if (node && node.textContent !== String(text)) node.textContent = text;
  }

  // -- times in the viewer's own zone, named; the countdown ticks ------------------------------
  var zoned = new Intl.DateTimeFormat(LANG, {year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"});
  function timeElement(iso) {
    var node = el("time", {datetime: iso}, zoned.format(new Date(iso)));
    node.title = new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
    return node;
  }
  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach(function (node) {
      var local = zoned.format(new Date(node.getAttribute("datetime")));
      if (node.textContent !== local) { node.title = node.textContent; node.textContent = local; }
    });
  }
  function timeLeft(iso) {
    var s = Math.floor((Date.parse(iso) - Date.now()) / 1000);
    if (s <= 0) return word("closing_now", "closing now");
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
    if (d) return fillText(word("left_d", "{d} d {h} h left"), {d: d, h: h});
    if (h) return fillText(word("left_h", "{h} h {m} min left"), {h: h, m: m});
    if (m) return fillText(word("left_m", "{m} min {s} s left"), {m: m, s: r});
    return fillText(word("left_s", "{s} s left"), {s: r});
  }
  function tick() {
    document.querySelectorAll(".left[data-closes]").forEach(function (node) {
      var left = timeLeft(node.getAttribute("data-closes"));
      if (node.textContent !== left) node.textContent = left;
    });
  }

  // -- pieces of an offer, as the templates draw them ---------------------------------------------
  function tally(node, o) {
    var count = o.reservation_count, minimum = o.condition.minimum_reservations;
    var strong = el("strong", {"class": "count"}, count);
    var words = count >= minimum
      ? fill(plural(o.verify_emails ? "reached_confirmed" : "reached", count), {count: strong, reached: el("span", {"class": "reached"},
          fillText(word("minimum_reached", "minimum of {minimum} reached"), {minimum: minimum}))})
      : fill(plural(o.verify_emails ? "needed_confirmed" : "needed", minimum), {count: strong, minimum: el("span", {"class": "minimum"}, minimum)});
    var text = words.map(function (w) { return w.textContent; }).join("");
    if (node.textContent === text) return;
    node.textContent = "";
    words.forEach(function (w) { node.appendChild(w); });
  }
  function bar(node, o) {
    node.setAttribute("aria-valuenow", o.reservation_count);
    node.setAttribute("aria-valuemax", o.condition.minimum_reservations);
    node.firstElementChild.style.width = pct(o);
  }
  function badge(node, o) {
    var state = o.outcome || o.status;
    node.className = "badge " + state;
    node.textContent = (WORDS.status || {})[state] || state;
    return node;
  }
  function kindWord(kind) { return (WORDS.kind || {})[kind] || kind; }
  function outcomeWords(o) {
    if (o.outcome === "concluded") return fillText(word("concluded", ""),
      {seller: o.condition.seller_name, price: money(o.condition.unit_price, o.currency)});
    if (o.outcome === "failed") return word("failed", "");
    return "";
  }

  function chart(o) {  // the same step chart as pages.price_chart
    var start = Date.parse(o.opens_at), end = Date.parse(o.closes_at), span = Math.max(end - start, 1000);
    var prices = o.history.map(function (e) { return e.unit_price; });
    var top = Math.max.apply(null, prices), bottom = Math.min.apply(null, prices);
    var pad = Math.max((top - bottom) * 0.15, top * 0.05, 1), hi = top + pad, lo = Math.max(bottom - pad, 0);
    function x(t) { return Math.round(10 * (LEFT + (CHART_W - LEFT - 10) * Math.min(Math.max((t - start) / span, 0), 1))) / 10; }
    function y(p) { return Math.round(10 * (10 + (CHART_H - 30) * (hi - p) / (hi - lo))) / 10; }
    function svg(tag, attrs, text) {
      var node = document.createElementNS(SVG, tag);
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
      if (text !== undefined) node.textContent = text;
      return node;
    }
    var root = svg("svg", {viewBox: "0 0 " + CHART_W + " " + CHART_H, width: "100%", role: "img",
                           "aria-label": word("chart", "")});
    var points = [];
    o.history.forEach(function (e, i) {
      var at = Date.parse(e.at);
      if (i) points.push([x(at), y(o.history[i - 1].unit_price)]);
      points.push([x(at), y(e.unit_price)]);
    });
    points.push([x(Math.min(Math.max(Date.now(), start), end)), y(prices[prices.length - 1])]);
    var inviteX = x(Date.parse(o.invite_at));
    [svg("line", {x1: LEFT, y1: y(hi), x2: LEFT, y2: y(lo), stroke: "#767f8f"}),
     svg("line", {x1: LEFT, y1: y(lo), x2: CHART_W - 10, y2: y(lo), stroke: "#767f8f"}),
     svg("line", {x1: inviteX, y1: y(hi), x2: inviteX, y2: y(lo), stroke: "#a35a14", "stroke-dasharray": "4 3"}),
     svg("text", inviteX > CHART_W - 70 ? {x: inviteX - 3, y: y(hi) + 12, "text-anchor": "end"}
                                        : {x: inviteX + 3, y: y(hi) + 12}, word("invitation", "invitation")),
     svg("polyline", {fill: "none", stroke: "#0b6e4f", "stroke-width": 2.5,
                      points: points.map(function (p) { return p.join(","); }).join(" ")}),
     svg("text", {x: 2, y: y(hi) + 4}, money(Math.round(hi), o.currency)),
     svg("text", {x: 2, y: y(lo)}, money(Math.round(lo), o.currency))
    ].forEach(function (n) { root.appendChild(n); });
    o.history.forEach(function (e) {
      var dot = svg("circle", {cx: x(Date.parse(e.at)), cy: y(e.unit_price), r: 4, fill: "#0b6e4f"});
      dot.appendChild(svg("title", {}, fillText(word("dot", ""),
        {price: money(e.unit_price, o.currency), seller: e.seller_name, kind: kindWord(e.kind)})));
      root.appendChild(dot);
    });
    return root;
  }
  function historyRows(body, o) {
    body.textContent = "";
    o.history.forEach(function (e) {
      var row = el("tr"), when = el("td", {"class": "muted"}), who = el("td", {}, e.seller_name + " ");
      when.appendChild(timeElement(e.at));
      who.appendChild(el("span", {"class": "muted"}, "(" + kindWord(e.kind) + ")"));
      [when, who, el("td", {}, money(e.unit_price, e.currency || o.currency)), el("td", {}, e.minimum_reservations)]
        .forEach(function (td) { row.appendChild(td); });
      body.appendChild(row);
    });
  }

  // -- the stream, or polling where there is no EventSource ---------------------------------------
  function listen(streamUrl, pollUrls, apply) {
    if (window.EventSource) {
      new EventSource(streamUrl).addEventListener("offer", function (e) { apply(JSON.parse(e.data)); });
      return;
    }
    setInterval(function () {
      pollUrls.forEach(function (url) {
        fetch(url, {headers: {"Accept": "application/json"}})
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (body) { if (body) (body.items || [body]).forEach(apply); })
          .catch(function () {});
      });
    }, 2000);
  }
  function everySecond() { localise(document); tick(); setInterval(tick, 1000); }

  window.cobuyLiveOffer = function (id) {
    var shownHistory = -1;
    everySecond();
    listen("/api/v1/offers/" + encodeURIComponent(id) + "/stream", ["/api/v1/offers/" + encodeURIComponent(id)],
      function (o) {
        var open = o.status === "open";
        set(document, "#holder", o.condition.seller_name);
        set(document, "#price", money(o.condition.unit_price, o.currency));
        set(document, "#minimum-words", o.condition.minimum_reservations);
        tally(document.getElementById("tally"), o);
        bar(document.querySelector("#condition .bar"), o);
        badge(document.getElementById("status"), o);
        document.getElementById("invited").hidden = !o.invited;
        document.getElementById("countdown").hidden = !open;
        var outcome = document.getElementById("outcome");
        set(document, "#outcome", outcomeWords(o));
        outcome.hidden = !o.outcome;
        document.getElementById("reserve-open").hidden = !open;
        document.getElementById("reserve-closed").hidden = open;
        if (o.history.length !== shownHistory) {
          shownHistory = o.history.length;
          var holder = document.getElementById("chart");
          holder.textContent = "";
          holder.appendChild(chart(o));
          historyRows(document.getElementById("history"), o);
        }
      });
  };

  function card(o) {
    var node = el("article", {"class": "card offer", "data-offer-id": o.id});
    var h3 = el("h3"), by = el("div", {"class": "muted"}), closes = el("div", {"class": "muted"});
    h3.appendChild(el("a", {href: "/offers/" + encodeURIComponent(o.id)}, o.title));
    fill(word("by", "{seller}"), {seller: el("span", {"class": "holder"})}).forEach(function (n) { by.appendChild(n); });
    var progress = el("div", {"class": "bar", role: "progressbar", "aria-label": word("progress", ""),
                              "aria-valuemin": "0"});
    progress.appendChild(el("div"));
    fill(word("closes", "{when} · {left}"), {
      when: timeElement(o.closes_at),
      left: el("span", {"class": "left", "data-closes": o.closes_at}, timeLeft(o.closes_at))
    }).forEach(function (n) { closes.appendChild(n); });
    [h3, by, el("div", {"class": "price"}), progress, el("div", {"class": "tally", "aria-live": "polite"}), closes]
      .forEach(function (n) { node.appendChild(n); });
    return node;
  }
  function closedRow(o) {
    var row = el("tr", {"data-offer-id": o.id}), title = el("td"), outcome = el("td");
    title.appendChild(el("a", {href: "/offers/" + encodeURIComponent(o.id)}, o.title));
    outcome.appendChild(badge(el("span"), o));
    [title, el("td", {}, o.condition.seller_name), el("td", {}, money(o.condition.unit_price, o.currency)),
     el("td", {}, o.reservation_count + " / " + o.condition.minimum_reservations), outcome]
      .forEach(function (n) { row.appendChild(n); });
    return row;
  }

  // The seller's dashboard: every offer it lists follows the all-offers stream (count, holder, price).
  window.cobuyLiveDashboard = function (since) {
    everySecond();
    listen("/api/v1/offers/stream?last_event_id=" + since, [], function (o) {
      document.querySelectorAll('[data-offer-id="' + o.id + '"]').forEach(function (node) {
        set(node, ".holder", o.condition.seller_name);
        set(node, ".price", money(o.condition.unit_price, o.currency));
        set(node, ".minimum", o.condition.minimum_reservations);
        var count = node.querySelector(".tally"), progress = node.querySelector(".bar");
        if (count) tally(count, o);
        if (progress) bar(progress, o);
      });
    });
  };

  window.cobuyLiveHome = function (page, since) {
    var open = document.getElementById("open-offers"), closed = document.getElementById("closed-offers");
    everySecond();
    function showEmpty() {
      document.getElementById("no-open").hidden = !!open.querySelector("article");
      closed.hidden = !closed.querySelector("tbody tr");
      document.getElementById("none-closed").hidden = !closed.hidden;
    }
    listen("/api/v1/offers/stream?last_event_id=" + since,
      ["/api/v1/offers?status=open&per_page=50&page=" + page, "/api/v1/offers?status=closed&per_page=10"],
      function (o) {
        var current = open.querySelector('article[data-offer-id="' + o.id + '"]');
        if (o.status === "closed") {
          if (current) current.remove();
          var rows = closed.querySelector("tbody");
          var old = rows.querySelector('tr[data-offer-id="' + o.id + '"]');
          if (old) old.replaceWith(closedRow(o)); else rows.insertBefore(closedRow(o), rows.firstChild);
          while (rows.children.length > 10) rows.lastElementChild.remove();
        } else {
          if (!current && page !== 1) return;  // new offers come first: page 1 shows them
          if (!current) { current = card(o); open.insertBefore(current, open.firstChild); }
          set(current, ".holder", o.condition.seller_name);
          set(current, ".price", money(o.condition.unit_price, o.currency));
          tally(current.querySelector(".tally"), o);
          bar(current.querySelector(".bar"), o);
        }
        showEmpty();
      });
  };
})();
