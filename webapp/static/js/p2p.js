// bs-market P2P: progressive enhancements for the trade and offer pages (they work without it).
(function () {
  "use strict";

  // Confirm irreversible actions: <form data-confirm="Question?">
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  // Trade page: keep the chat scrolled to the newest message; when a refresh shows that the
  // trade changed state (the other party paid, released, a deadline passed…), reload the page.
  var page = document.getElementById("trade-page");
  var chat = document.querySelector(".p2p-chat[data-refresh-url]");
  if (page && chat) {
    var count = -1;
    var scroll = function () {
      var n = chat.querySelectorAll(".p2p-bubble, .badge").length;
      if (n !== count) { chat.scrollTop = chat.scrollHeight; count = n; }
    };
    scroll();
    new MutationObserver(function () {
      scroll();
      var current = chat.querySelector("[data-chat-status]");
      if (current && current.getAttribute("data-chat-status") !== page.getAttribute("data-trade-status")) {
        window.location.reload();
      }
    }).observe(chat, { childList: true, subtree: true });
    // When the payment countdown reaches zero, refresh once so the page shows the new situation.
    var deadline = page.querySelector("[data-countdown]");
    if (deadline) {
      var left = new Date(deadline.getAttribute("data-countdown")) - new Date();
      if (left > 0) setTimeout(function () { window.location.reload(); }, left + 5000);
    }
  }

  // Offer form: show the fields of the chosen price type and the effective floating price live.
  var form = document.getElementById("offer-form");
  if (form) {
    var prices = {};
    try { prices = JSON.parse(form.getAttribute("data-prices") || "{}"); } catch (e) { prices = {}; }
    var brl = new Intl.NumberFormat("pt-BR", { style: "currency", currency: "BRL" });
    var parse = function (text) {
      text = (text || "").replace(/\s|R\$/g, "");
      if (text.indexOf(",") >= 0) text = text.replace(/\./g, "").replace(",", ".");
      var value = parseFloat(text);
      return isNaN(value) ? null : value;
    };
    var update = function () {
      var type = (form.querySelector("input[name=price_type]:checked") || {}).value || "fixed";
      form.querySelectorAll("[data-price-type]").forEach(function (el) {
        el.classList.toggle("d-none", el.getAttribute("data-price-type") !== type);
      });
      var cryptoField = form.querySelector("select[name=crypto]");
      var crypto = cryptoField ? cryptoField.value : form.getAttribute("data-crypto");
      var index = prices[crypto] ? parseFloat(prices[crypto]) : null;
      var premium = parse((form.querySelector("input[name=premium_percent]") || {}).value) || 0;
      var effective = document.getElementById("effective-price");
      var indexLabel = document.getElementById("index-price");
      if (index === null) {
        effective.textContent = "—";
        indexLabel.textContent = "Cotação de " + crypto + " indisponível agora.";
      } else {
        effective.textContent = brl.format(Math.round(index * (1 + premium / 100) * 100) / 100);
        indexLabel.textContent = "Índice Binance " + crypto + ": " + brl.format(index);
      }
      // Bank details only where the buyer pays outside the platform: a SELL offer with PIX or TED.
      var details = form.querySelector("[data-show-for]");
      var sideField = form.querySelector("input[name=side]:checked");
      if (details && sideField) {
        var outside = Array.prototype.some.call(form.querySelectorAll("input[name=payment_methods]:checked"),
          function (box) { return box.value === "PIX" || box.value === "TED"; });
        details.classList.toggle("d-none", !(sideField.value === "SELL" && outside));
      }
    };
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();
  }
})();
