/* Live updates without a reload: polls the public API (SPEC §4 allows polling, ≤ 2 s). */
(function () {
  "use strict";
  function money(minor, currency) {
    try {
      var f = new Intl.NumberFormat("en-US", {style: "currency", currency: currency.toUpperCase()});
      return f.format(minor / Math.pow(10, f.resolvedOptions().maximumFractionDigits));
    } catch (e) { return String(minor); }
  }
  function pct(o) {
    return Math.min(100, Math.round(100 * o.reservation_count / o.condition.minimum_reservations)) + "%";
  }
  function getJSON(url, done) {
    fetch(url, {headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) { if (body) done(body); })
      .catch(function () {});
  }
  function set(root, selector, text) {
    var el = root.querySelector(selector);
    if (el && el.textContent !== String(text)) el.textContent = text;
  }
  window.cobuyLiveOffer = function (id) {
    setInterval(function () {
      getJSON("/api/v1/offers/" + encodeURIComponent(id), function (o) {
        set(document, "#count", o.reservation_count);
        set(document, "#minimum", o.condition.minimum_reservations);
        set(document, "#holder", o.condition.seller_name);
        set(document, "#price", money(o.condition.unit_price, o.currency));
        set(document, "#status", o.outcome || o.status);
        document.getElementById("progress").style.width = pct(o);
      });
    }, 1000);
  };
  window.cobuyLiveHome = function (page) {
    setInterval(function () {
      getJSON("/api/v1/offers?status=open&per_page=50&page=" + page, function (list) {
        list.items.forEach(function (o) {
          var card = document.querySelector('article[data-offer-id="' + o.id + '"]');
          if (!card) return;
          set(card, ".count", o.reservation_count);
          set(card, ".minimum", o.condition.minimum_reservations);
          set(card, ".holder", o.condition.seller_name);
          set(card, ".price", money(o.condition.unit_price, o.currency));
          card.querySelector(".bar > div").style.width = pct(o);
        });
      });
    }, 1500);
  };
})();
