// Configurable columns: every table with data-columns gets a "Columns" menu; which columns are
// hidden is remembered per table in localStorage, so each user keeps the view they chose.
(function () {
  "use strict";
  var PREFIX = "portal.columns.";

  function hiddenColumns(table) {
    try { return JSON.parse(localStorage.getItem(PREFIX + table.dataset.columns)) || []; }
    catch (error) { return []; }
  }

  function apply(table, hidden) {
    table.querySelectorAll("[data-col]").forEach(function (cell) {
      cell.hidden = hidden.indexOf(cell.dataset.col) !== -1;
    });
  }

  function menu(table) {
    var headers = Array.prototype.filter.call(table.querySelectorAll("thead [data-col]"), function (th) {
      return th.textContent.trim() !== "";
    });
    var details = document.createElement("details");
    details.className = "columns";
    details.innerHTML = "<summary>Columns</summary>";
    var fieldset = document.createElement("fieldset");
    fieldset.innerHTML = "<legend>Show columns</legend>";
    var hidden = hiddenColumns(table);
    headers.forEach(function (th) {
      var label = document.createElement("label");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.name = th.dataset.col;
      box.checked = hidden.indexOf(th.dataset.col) === -1;
      box.addEventListener("change", function () {
        var now = hiddenColumns(table).filter(function (col) { return col !== box.name; });
        if (!box.checked) { now.push(box.name); }
        localStorage.setItem(PREFIX + table.dataset.columns, JSON.stringify(now));
        apply(table, now);
      });
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + th.textContent.replace(/[▲▼]/g, "").trim()));
      fieldset.appendChild(label);
    });
    details.appendChild(fieldset);
    table.parentNode.insertBefore(details, table);
    apply(table, hidden);
  }

  document.querySelectorAll("table[data-columns]").forEach(menu);
})();
