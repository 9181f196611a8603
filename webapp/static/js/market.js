// bs-market market desk: small improvements over pages that work without JavaScript.
(function () {
  "use strict";
  // Quote form: label the amount for buying (R$) or selling (crypto) and show the matching balance.
  var form = document.getElementById("quote-form");
  if (form) {
    var label = document.getElementById("amount-label");
    var crypto = form.querySelector("select[name=crypto]");
    var update = function () {
      var checked = form.querySelector("input[name=side]:checked");
      var side = checked ? checked.value : "buy";
      var code = crypto ? crypto.value : "BTC";
      if (label) {
        label.textContent = side === "buy" ? label.getAttribute("data-label-buy")
                                           : label.getAttribute("data-label-sell") + " (" + code + ")";
      }
      form.querySelectorAll("[data-balance]").forEach(function (el) {
        var show = side === "buy" ? el.getAttribute("data-balance") === "BRL" : el.getAttribute("data-balance") === code;
        el.classList.toggle("d-none", !show);
      });
      var amount = form.querySelector("input[name=amount]");
      if (amount) { amount.placeholder = side === "buy" ? "0,00" : "0,0000"; }
    };
    form.addEventListener("change", update);
    update();
  }
  // Quote confirmation: once the countdown reaches zero the quote is gone; say so instead of failing on submit.
  var confirmButton = document.querySelector("[data-quote-confirm]");
  if (confirmButton) {
    var countdown = confirmButton.querySelector("[data-countdown]");
    var expires = countdown ? new Date(countdown.getAttribute("data-countdown")) : null;
    var timer = setInterval(function () {
      if (expires && new Date() >= expires) {
        confirmButton.disabled = true;
        var note = document.querySelector("[data-quote-expired-note]");
        if (note) { note.classList.remove("d-none"); }
        clearInterval(timer);
      }
    }, 250);
    var quoteForm = document.querySelector("[data-quote-form]");
    if (quoteForm) {
      quoteForm.addEventListener("submit", function () {
        // one click, one request (the idempotency key covers a double submit anyway)
        setTimeout(function () { confirmButton.disabled = true; }, 0);
      });
    }
  }
})();
