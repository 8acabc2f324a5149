/* Import and export job pages: confirm deletions; poll a job's status endpoint and show its
   progress until it is finished (state is server-side, so a reload shows the same). */
(function () {
  'use strict';
  document.addEventListener('click', function (e) {
    var button = e.target.closest ? e.target.closest('button[data-confirm]') : null;
    if (button && !window.confirm(button.getAttribute('data-confirm'))) { e.preventDefault(); }
  });

  function setter(box) {
    return function (name, value) {
      var el = box.querySelector('[data-field="' + name + '"]');
      if (el) { el.textContent = value === null || value === undefined ? '' : value; }
    };
  }

  // Poll box's data-url every `every` ms, handing each status to `show`, until it is finished.
  function poll(box, show, every, first) {
    var url = box.getAttribute('data-url');
    function tick() {
      fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (!s) { return; }
          show(s);
          if (!s.finished) { window.setTimeout(tick, every); }
        })
        .catch(function () { window.setTimeout(tick, every * 3); });
    }
    window.setTimeout(tick, first);
  }

  var importBox = document.getElementById('cd-import-status');
  if (importBox) {
    var setImport = setter(importBox);
    poll(importBox, function (s) {
      ['status', 'done', 'created', 'updated', 'unchanged', 'failed', 'notices', 'reason'].forEach(function (k) { setImport(k, s[k]); });
      setImport('total', s.total === null ? '?' : s.total);
      var bar = importBox.querySelector('[data-field="bar"]');
      if (bar) { bar.style.width = s.percent + '%'; }
    }, 1000, 0);
  }

  var exportBox = document.getElementById('cd-export-status');
  if (exportBox) {
    var setExport = setter(exportBox);
    poll(exportBox, function (s) {
      setExport('label', s.label);
      setExport('rows', s.rows);
      setExport('reason', s.reason);
      var link = exportBox.querySelector('[data-field="download"]');
      if (link) { link.hidden = s.status !== 'done'; }
    }, 2000, 2000);
  }
}());
