// The subscriber pages' only script (CSP allows no inline script): fills the time zone field
// from the browser, helps publishers copy the embed snippets, and answers the signup form's proof
// of work when the site asks for one (course/web/proof_of_work.py).
(function () {
  "use strict";

  var zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    zone = ""; // very old browser: the field stays as it is and the server falls back to UTC
  }
  document.querySelectorAll("input[data-fill-timezone]").forEach(function (input) {
    if (!input.value && zone) {
      input.value = zone;
    }
  });

  // Proof of work (ALTCHA v1): find n <= max with SHA-256(salt + n) == challenge, in batches so
  // the page stays responsive, then send the form with the answer in the "altcha" field.
  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (byte) {
      return ("0" + byte.toString(16)).slice(-2);
    }).join("");
  }

  function solve(salt, challenge, max) {
    var encoder = new TextEncoder();
    var batch = 2000;
    function from(start) {
      var hashes = [];
      for (var n = start; n < start + batch && n <= max; n++) {
        hashes.push(crypto.subtle.digest("SHA-256", encoder.encode(salt + n)));
      }
      return Promise.all(hashes).then(function (results) {
        for (var i = 0; i < results.length; i++) {
          if (hex(results[i]) === challenge) {
            return start + i;
          }
        }
        return start + batch > max ? null : from(start + batch);
      });
    }
    return from(0);
  }

  document.querySelectorAll("form[data-altcha-challenge]").forEach(function (form) {
    var field = form.querySelector("input[name=altcha]");
    var status = form.querySelector("[data-altcha-status]");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (event) {
      if (field.value) {
        return; // solved: let it go
      }
      event.preventDefault();
      if (!window.crypto || !crypto.subtle) {
        status.textContent = "This browser cannot do the check this form needs (it needs a secure https page).";
        return;
      }
      button.disabled = true;
      status.textContent = "Checking…";
      var salt = form.getAttribute("data-altcha-salt");
      var challenge = form.getAttribute("data-altcha-challenge");
      solve(salt, challenge, parseInt(form.getAttribute("data-altcha-max"), 10)).then(function (number) {
        if (number === null) {
          status.textContent = "The check did not work out. Reload the page and try again.";
          button.disabled = false;
          return;
        }
        field.value = btoa(JSON.stringify({
          algorithm: form.getAttribute("data-altcha-algorithm"),
          challenge: challenge,
          number: number,
          salt: salt,
          signature: form.getAttribute("data-altcha-signature")
        }));
        status.textContent = "Sending…";
        form.submit();
      });
    });
  });

  document.querySelectorAll("[data-select-on-focus]").forEach(function (field) {
    field.addEventListener("focus", function () {
      field.select();
    });
  });

  document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy-target"));
      if (!source) {
        return;
      }
      var done = function () {
        var label = button.textContent;
        button.textContent = "Copied";
        window.setTimeout(function () { button.textContent = label; }, 1600);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(source.value).then(done, function () { source.select(); });
      } else {
        source.select();
      }
    });
  });
})();
