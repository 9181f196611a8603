// bs-market: verify a proof of liabilities in the browser (crypto.subtle SHA-256).
// leaf = sha256(utf8("salt:user_id:currency:balance")); for each step of the path,
// node = sha256(sibling || node) when the sibling is on the left, sha256(node || sibling) otherwise.
(function () {
  "use strict";
  var card = document.getElementById("pol-proof");
  var button = document.getElementById("pol-verify");
  var result = document.getElementById("pol-result");
  if (!card || !button || !result) return;

  function hexToBytes(hex) {
    var out = new Uint8Array(hex.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }
  function bytesToHex(bytes) {
    return Array.prototype.map.call(new Uint8Array(bytes), function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join("");
  }
  function concat(a, b) {
    var out = new Uint8Array(a.length + b.length);
    out.set(a, 0); out.set(b, a.length);
    return out;
  }
  function sha256(bytes) {
    return window.crypto.subtle.digest("SHA-256", bytes).then(function (d) { return new Uint8Array(d); });
  }
  function show(ok, label) {
    result.textContent = label;
    result.className = "small fw-semibold " + (ok ? "text-success" : "text-danger");
  }

  button.addEventListener("click", function () {
    if (!window.crypto || !window.crypto.subtle) { show(false, card.dataset.unsupportedLabel); return; }
    var d = card.dataset;
    var text = d.salt + ":" + d.userId + ":" + d.currency + ":" + d.balance;
    var steps = Array.prototype.map.call(document.querySelectorAll("[data-testid=path] li[data-hash]"), function (li) {
      return { side: li.getAttribute("data-side"), hash: hexToBytes(li.getAttribute("data-hash")) };
    });
    var chain = sha256(new TextEncoder().encode(text)).then(function (leaf) {
      if (bytesToHex(leaf) !== d.leafHash) throw new Error("leaf");
      return leaf;
    });
    steps.forEach(function (step) {
      chain = chain.then(function (node) {
        return sha256(step.side === "left" ? concat(step.hash, node) : concat(node, step.hash));
      });
    });
    chain.then(function (root) {
      var ok = bytesToHex(root) === d.root;
      show(ok, ok ? d.okLabel : d.failLabel);
    }).catch(function () { show(false, d.failLabel); });
  });
})();
