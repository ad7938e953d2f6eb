(function () {
  "use strict";
  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };

  function cellValue(row, idx) {
    var cell = row.cells[idx];
    if (!cell) { return ""; }
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim().toLowerCase() : v;
  }

  function sortBy(table, th) {
    var heads = th.parentNode.children;
    var idx = Array.prototype.indexOf.call(heads, th);
    var numeric = th.getAttribute("data-type") === "num";
    var asc = th.getAttribute("aria-sort") !== "ascending";
    each(heads, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, idx), y = cellValue(b, idx), r;
      if (numeric) { r = (parseFloat(x) || 0) - (parseFloat(y) || 0); }
      else { r = x < y ? -1 : (x > y ? 1 : 0); }
      return asc ? r : -r;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    body.appendChild(frag);
  }

  each(document.querySelectorAll("table.sortable"), function (table) {
    each(table.querySelectorAll("thead th"), function (th) {
      if (th.hasAttribute("data-nosort")) { return; }
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); }
      });
    });
  });

  each(document.querySelectorAll("input[data-filter]"), function (input) {
    var target = document.getElementById(input.getAttribute("data-filter"));
    var counter = document.getElementById(input.getAttribute("data-count"));
    if (!target) { return; }
    var items = target.querySelectorAll("[data-row]");
    var texts = Array.prototype.map.call(items, function (r) {
      return r.textContent.toLowerCase();
    });
    input.addEventListener("input", function () {
      var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      each(items, function (r, i) {
        var ok = terms.every(function (t) { return texts[i].indexOf(t) !== -1; });
        r.hidden = !ok;
        if (ok) { shown += 1; }
      });
      if (counter) { counter.textContent = shown + " of " + items.length + " shown"; }
    });
  });

  each(document.querySelectorAll("button[data-expand]"), function (button) {
    button.addEventListener("click", function () {
      var open = button.getAttribute("data-expand") === "open";
      var scope = document.getElementById(button.getAttribute("data-target"));
      if (!scope) { return; }
      each(scope.querySelectorAll("details"), function (d) {
        if (!d.hidden) { d.open = open; }
      });
    });
  });

  document.body.setAttribute("data-report-ready", "1");
}());
