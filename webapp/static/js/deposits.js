// bs-market deposits: when the live status panel (refreshed by app.js) shows the
// deposit is no longer payable, hide the QR code; when a QR code became ready
// for a page opened before it existed, reload to show it. Works without JS too.
(function () {
  "use strict";
  var panel = document.getElementById("deposit-status");
  if (!panel || !window.MutationObserver) return;
  var waitingQr = panel.getAttribute("data-waiting-qr") === "1";
  new MutationObserver(function () {
    var live = panel.querySelector("[data-deposit-state]");
    if (!live) return;
    var state = live.getAttribute("data-deposit-state");
    var qr = document.getElementById("deposit-qr");
    if (qr && state !== "PENDING") qr.classList.add("d-none");
    if (waitingQr && state === "PENDING" && live.getAttribute("data-deposit-has-qr") === "1") {
      waitingQr = false;
      window.location.reload();
    }
  }).observe(panel, { childList: true });
})();
