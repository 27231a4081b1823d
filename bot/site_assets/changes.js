// changes.html: the change log from data/changes.json, filtered by kind and state in the
// browser. Every value is set with textContent, never parsed as HTML.
"use strict";
(function () {
  var form = document.getElementById("filters");
  var body = document.querySelector("#changes tbody");
  var count = document.getElementById("count");
  if (!form || !body) {
    return;
  }
  var root = form.dataset.root;
  var LABELS = {
    added: "new partnership",
    removed: "partnership ended",
    renamed: "renamed",
    changed: "details changed",
  };
  var rows = [];

  // The same rule as bot/site.py page_name.
  function pageName(key) {
    return key.toLowerCase().replace(/~/g, "--").replace(/\//g, "-").replace(/[^a-z0-9-]/g, "-");
  }

  function detail(change) {
    var before = change.before || {};
    var after = change.after || {};
    if (change.kind === "renamed") {
      return "was " + before.name;
    }
    if (change.kind === "changed") {
      return change.fields.map(function (f) {
        return f + ": " + before[f] + " → " + after[f];
      }).join("; ");
    }
    if (change.kind === "added" && change.active_date) {
      return "active since " + change.active_date;
    }
    if (change.kind === "removed" && before.active_date) {
      return "partner since " + before.active_date;
    }
    return "";
  }

  function cell(tr, text, label) {
    var td = document.createElement("td");
    td.textContent = text;
    td.dataset.label = label;
    tr.appendChild(td);
    return td;
  }

  function row(change) {
    var tr = document.createElement("tr");
    var when = document.createElement("time");
    when.dateTime = change.detected_at;
    when.textContent = change.detected_at.slice(0, 10);
    cell(tr, "", "Detected").appendChild(when);
    cell(tr, LABELS[change.kind] || change.kind, "Change");
    var agency = cell(tr, "", "Agency");
    var link = document.createElement("a");
    link.href = root + "agencies/" + pageName(change.key) + ".html";
    link.textContent = change.name;
    agency.appendChild(link);
    if (change.city) {
      agency.appendChild(document.createTextNode(", " + change.city));
    }
    cell(tr, change.state || "", "State");
    cell(tr, detail(change), "Details");
    return tr;
  }

  function show() {
    var kind = form.elements.kind.value;
    var state = form.elements.state.value;
    var shown = rows.filter(function (item) {
      return (!kind || item.change.kind === kind) && (!state || item.change.state === state);
    });
    body.replaceChildren.apply(body, shown.map(function (item) { return item.tr; }));
    count.textContent = shown.length + " of " + rows.length + " changes";
  }

  fetch(form.dataset.changes)
    .then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.json();
    })
    .then(function (changes) {
      rows = changes.slice().reverse().map(function (change) {
        return { change: change, tr: row(change) };
      });
      form.addEventListener("change", show);
      show();
    })
    .catch(function (error) {
      count.textContent = "The change log could not be loaded (" + error.message + ").";
      console.warn(error);
    });
})();
