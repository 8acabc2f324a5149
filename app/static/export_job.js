/* Background client export page: poll the job's status every 2 s until it is finished, then
   offer the download (state is server-side, so a reload shows the same). */
(function () {
  'use strict';
  var box = document.getElementById('cd-export-status');
  if (!box) { return; }
  var url = box.getAttribute('data-url');
  function set(name, value) {
    var el = box.querySelector('[data-field="' + name + '"]');
    if (el) { el.textContent = value === null || value === undefined ? '' : value; }
  }
  function tick() {
    fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { return; }
        set('label', s.label);
        set('rows', s.rows);
        set('reason', s.reason);
        var link = box.querySelector('[data-field="download"]');
        if (link) { link.hidden = s.status !== 'done'; }
        if (!s.finished) { window.setTimeout(tick, 2000); }
      })
      .catch(function () { window.setTimeout(tick, 4000); });
  }
  window.setTimeout(tick, 2000);
}());
