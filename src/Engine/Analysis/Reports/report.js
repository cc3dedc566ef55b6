// CloudMem case report: the timeline filter and a count of the events shown. No network, no eval, no HTML from data
// (only textContent and the hidden attribute are written).
(function () {
  'use strict';
  var root = document.documentElement;
  var box = document.getElementById('timeline-filter');
  var shown = document.getElementById('timeline-shown');
  var table = document.getElementById('timeline-table');
  if (box && shown && table) {
    var rows = Array.prototype.slice.call(table.tBodies[0] ? table.tBodies[0].rows : []);
    var texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
    var update = function () {
      var words = box.value.toLowerCase().split(/\s+/).filter(function (w) { return w.length > 0; });
      var count = 0;
      for (var i = 0; i < rows.length; i++) {
        var hit = words.every(function (w) { return texts[i].indexOf(w) >= 0; });
        rows[i].hidden = !hit;
        if (hit) { count++; }
      }
      shown.textContent = count + ' of ' + rows.length + ' events shown';
    };
    box.addEventListener('input', update);
    document.getElementById('timeline-tools').hidden = false;
    update();
  }
  var toggle = document.getElementById('tables-toggle');
  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener('click', function () {
      var all = document.querySelectorAll('#tables details');
      var open = toggle.getAttribute('data-open') !== 'yes';
      for (var i = 0; i < all.length; i++) { all[i].open = open; }
      toggle.setAttribute('data-open', open ? 'yes' : 'no');
      toggle.textContent = open ? 'Collapse all tables' : 'Expand all tables';
    });
  }
  root.setAttribute('data-scripts', 'ran');
}());
