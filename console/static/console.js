// Tocsin console: live progress and security keys. Every action also works
// as a plain form without this script.
(function () {
  "use strict";
  // Each form submits once: the server refuses a second submission too.
  document.querySelectorAll("form[method=post]").forEach(function (f) {
    f.addEventListener("submit", function () {
      setTimeout(function () {
        f.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });

  // The list of targets still waiting is redrawn from the page itself, at
  // most every two seconds while counts change.
  var waitingDue = 0;
  function refreshWaiting() {
    var w = document.getElementById("waiting");
    if (!w || Date.now() < waitingDue) { return; }
    waitingDue = Date.now() + 2000;
    fetch(location.pathname, { credentials: "same-origin" }).then(function (r) { return r.text(); }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.getElementById("waiting");
      if (fresh) { w.replaceWith(document.importNode(fresh, true)); } else { w.remove(); }
    });
  }

  // Live counts on an alert's page (Server-Sent Events).
  var table = document.getElementById("channels");
  if (table && window.EventSource) {
    var es = new EventSource("/alerts/" + encodeURIComponent(table.dataset.alert) + "/events");
    es.onmessage = function (ev) {
      var m = JSON.parse(ev.data);
      var st = document.getElementById("state");
      if (st && m.state) {
        var names = JSON.parse(st.dataset.labels || "{}");
        st.textContent = names[m.state] || m.state;
      }
      refreshWaiting();
      Object.keys(m.channels || {}).forEach(function (k) {
        var row = table.querySelector('tr[data-kind="' + k + '"]');
        if (!row) { return; }
        var c = m.channels[k];
        row.querySelectorAll("td[data-f]").forEach(function (td) {
          var f = td.dataset.f;
          if (f === "retracted") {
            td.textContent = c.retracted ? "retracted " + c.retracted : "";
          } else {
            td.textContent = c[f] || 0;
          }
        });
      });
      if (m.state === "retracted" || m.state === "expired") {
        var form = document.getElementById("retract");
        if (form) { form.hidden = true; }
      }
    };
    es.addEventListener("gone", function () { es.close(); });
  }

  // An enrolment link carries its token in the fragment (never sent to a
  // server): put it into the form.
  var inv = document.getElementById("invite-token");
  if (inv && !inv.value && location.hash.length > 1) { inv.value = decodeURIComponent(location.hash.slice(1)); }

  // Registering a security key for the signed-in person.
  var reg = document.getElementById("register-key");
  if (reg && window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON) {
    reg.addEventListener("click", async function () {
      var out = document.getElementById("key-result");
      var post = function (url, body) {
        return fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": reg.dataset.csrf }, body: JSON.stringify(body) })
          .then(function (r) { return r.json().then(function (j) { if (!r.ok) { throw new Error(j.error || r.statusText); } return j; }); });
      };
      try {
        var opts = await post("/keys/options", {});
        var cred = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(opts.publicKey) });
        await post("/keys", { response: cred.toJSON() });
        out.textContent = reg.dataset.done;
      } catch (e) {
        out.textContent = e.message;
        out.className = "error";
      }
    });
  }

  // Sign-in with a security key (WebAuthn), beside the code.
  var key = document.getElementById("signin-key");
  if (key && window.PublicKeyCredential && PublicKeyCredential.parseRequestOptionsFromJSON) {
    key.hidden = false;
    key.addEventListener("click", async function () {
      var form = document.getElementById("login");
      var op = form.elements.operator.value, pw = form.elements.password.value;
      var post = function (url, body) {
        return fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
          .then(function (r) { return r.json().then(function (j) { if (!r.ok) { throw new Error(j.error || r.statusText); } return j; }); });
      };
      try {
        var opts = await post("/login/key/options", { operator: op });
        var cred = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey) });
        await post("/login/key", { operator: op, password: pw, response: cred.toJSON() });
        location.href = "/";
      } catch (e) {
        var p = document.createElement("p");
        p.className = "error"; p.setAttribute("role", "alert"); p.textContent = e.message;
        form.prepend(p);
      }
    });
  }
})();
