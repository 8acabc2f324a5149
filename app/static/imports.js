/* Import pages: confirm deletions; on a job page poll the status endpoint and update the progress
   (survives reloads: state is server-side). */
(function () {
  'use strict';
  document.addEventListener('click', function (e) {
    var button = e.target.closest ? e.target.closest('button[data-confirm]') : null;
    if (button && !window.confirm(button.getAttribute('data-confirm'))) { e.preventDefault(); }
  });
  var box = document.getElementById('cd-import-status');
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
        ['status', 'done', 'created', 'updated', 'unchanged', 'failed', 'notices', 'reason'].forEach(function (k) { set(k, s[k]); });
        set('total', s.total === null ? '?' : s.total);
        var bar = box.querySelector('[data-field="bar"]');
        if (bar) { bar.style.width = s.percent + '%'; }
        if (!s.finished) { window.setTimeout(tick, 1000); }
      })
      .catch(function () { window.setTimeout(tick, 3000); });
  }
  tick();
}());
