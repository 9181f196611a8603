// bs-market: progressive enhancements only; every page works without JavaScript.
(function () {
  "use strict";
  // Copy buttons: <button data-copy-target="#id">
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var target = document.querySelector(button.getAttribute("data-copy-target"));
    if (!target || !navigator.clipboard) return;
    navigator.clipboard.writeText(target.textContent.trim()).then(function () {
      var original = button.textContent;
      button.textContent = button.getAttribute("data-copied-label") || "Copiado!";
      setTimeout(function () { button.textContent = original; }, 1500);
    });
  });
  // Countdowns: <span data-countdown="ISO-8601">
  function tick() {
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = Math.max(0, Math.floor((new Date(el.getAttribute("data-countdown")) - new Date()) / 1000));
      var m = Math.floor(left / 60), s = left % 60;
      el.textContent = m + ":" + (s < 10 ? "0" : "") + s;
    });
  }
  if (document.querySelector("[data-countdown]")) { tick(); setInterval(tick, 1000); }
  // Live panels: <div data-refresh-url="..." data-refresh-seconds="3"> replaced by the fragment the URL returns.
  document.querySelectorAll("[data-refresh-url]").forEach(function (el) {
    var seconds = parseInt(el.getAttribute("data-refresh-seconds") || "5", 10);
    setInterval(function () {
      fetch(el.getAttribute("data-refresh-url"), { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { el.innerHTML = html; tick(); } })
        .catch(function () {});
    }, seconds * 1000);
  });
})();
