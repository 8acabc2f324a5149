/* ClientDesk clients table: async Total, debounced search, selection + bulk forms, column panel,
   favourites panel. Small vanilla JS; the server renders everything and checks everything. */
(function () {
  'use strict';
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  var root = $('#cd-list');
  if (!root) { return; }
  var csrf = root.getAttribute('data-csrf');
  var search = window.location.search.replace(/^\?/, '');

  // ------------------------------------------------------------ exact Total, loaded after the rows
  var totalValue = null;
  fetch(root.getAttribute('data-total-url') + (search ? '?' + search : ''), { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (data) {
      if (!data) { return; }
      totalValue = data.total;
      $('#cd-total').textContent = data.total;
      $all('.cd-total-copy').forEach(function (el) { el.textContent = data.total; });
      $all('.cd-tab-count').forEach(function (el) {
        var n = data.counts[el.getAttribute('data-type')];
        el.textContent = n === undefined ? '' : n;
      });
      updateSelection();
    });

  // ------------------------------------------------------------ option lists, loaded when first needed
  // The page carries only the selected options of each list; the rest come from list_choices.
  var choicesLoaded = {};
  function loadChoices(scope) {
    var selects = $all('select[data-source]', scope).filter(function (el) { return !choicesLoaded[el.getAttribute('data-source')]; });
    var sources = selects.map(function (el) { return el.getAttribute('data-source'); })
      .filter(function (v, i, a) { return a.indexOf(v) === i; });
    if (!sources.length) { return; }
    sources.forEach(function (src) { choicesLoaded[src] = true; });
    fetch(root.getAttribute('data-choices-url') + '?sources=' + encodeURIComponent(sources.join(',')),
          { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { sources.forEach(function (src) { choicesLoaded[src] = false; }); return; }
        $all('select[data-source]').forEach(function (el) {
          var list = data[el.getAttribute('data-source')];
          if (!list) { return; }
          var present = {};
          $all('option', el).forEach(function (o) { present[o.value] = true; });
          list.forEach(function (pair) {
            if (present[pair[0]]) { return; }
            var o = document.createElement('option');
            o.value = pair[0]; o.textContent = pair[1];
            el.appendChild(o);
          });
          // keep the already selected options first, then the full list in its order
          if (el.multiple) {
            var chosen = $all('option', el).filter(function (o) { return o.selected; });
            var order = {};
            list.forEach(function (pair, i) { order[pair[0]] = i; });
            $all('option', el).sort(function (a, b) { return (order[a.value] || 0) - (order[b.value] || 0); })
              .forEach(function (o) { el.appendChild(o); });
            chosen.forEach(function (o) { o.selected = true; });
          }
        });
      });
  }
  var filtersBox = $('#cd-filters');
  if (filtersBox) {
    if (filtersBox.open) { loadChoices(filtersBox); }
    filtersBox.addEventListener('toggle', function () { if (filtersBox.open) { loadChoices(filtersBox); } });
  }
  $all('.cd-bulk-open').forEach(function (btn) {
    btn.addEventListener('click', function () { loadChoices(document.getElementById(btn.getAttribute('data-panel'))); });
  });

  // ------------------------------------------------------------ filters form: only set values go to the URL
  var form = $('#cd-filter-form');
  if (form) {
    form.addEventListener('submit', function () {
      $all('input, select', form).forEach(function (el) {
        if (el.name === 'clear') { return; }
        if (el.classList.contains('cd-text-op')) {
          var text = form.querySelector('input[name="' + el.name.replace(/_op$/, '') + '"]');
          if (!text || !text.value.trim()) { el.disabled = true; }
          return;
        }
        if (!el.value || (el.type === 'search' && !el.value.trim())) { el.disabled = true; }
      });
      $all('.cd-date-filter', form).forEach(function (box) {
        var preset = $('.cd-date-preset', box);
        if (preset && preset.value) { $all('input[type=date]', box).forEach(function (d) { d.disabled = true; }); }
      });
    });
    // Typing in the search box filters as you type (debounced), back to page 1.
    var box = $('#cd-search-box'), timer = null, initial = box ? box.value : '';
    if (box) {
      box.addEventListener('input', function () {
        clearTimeout(timer);
        timer = setTimeout(function () {
          if (box.value.trim() === initial.trim()) { return; }
          if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
        }, 500);
      });
      if (initial) { box.focus(); box.setSelectionRange(box.value.length, box.value.length); }
    }
  }

  // ------------------------------------------------------------ confirmations
  $all('form.cd-confirm').forEach(function (f) {
    f.addEventListener('submit', function (e) { if (!window.confirm(f.getAttribute('data-confirm'))) { e.preventDefault(); } });
  });
  $all('input.cd-next').forEach(function (el) { el.value = window.location.pathname + window.location.search; });
  $all('input.cd-query').forEach(function (el) { el.value = search; });

  // ------------------------------------------------------------ selection (CL-LIST-8)
  var bar = $('#cd-selection-bar'), allMatching = false;
  var pageBox = $('#cd-select-page');
  function checks() { return $all('.cd-row-check'); }
  function selectedIds() { return checks().filter(function (c) { return c.checked; }).map(function (c) { return c.value; }); }
  function updateSelection() {
    if (!bar) { return; }
    var ids = selectedIds(), all = checks();
    var onPage = all.length && ids.length === all.length;
    if (!onPage) { allMatching = false; }
    bar.hidden = ids.length === 0;
    $('#cd-selected-count').textContent = allMatching && totalValue !== null ? totalValue : ids.length;
    var more = totalValue !== null && totalValue > all.length;
    $('#cd-select-all-box').hidden = !(onPage && more && !allMatching);
    $('#cd-all-matching-note').hidden = !allMatching;
    if (pageBox) { pageBox.checked = onPage; pageBox.indeterminate = ids.length > 0 && !onPage; }
  }
  if (pageBox) {
    pageBox.addEventListener('change', function () {
      checks().forEach(function (c) { c.checked = pageBox.checked; });
      updateSelection();
    });
  }
  checks().forEach(function (c) { c.addEventListener('change', updateSelection); });
  // Export: ticked rows (not "all matching") narrow the export to those ids.
  $all('.cd-export-link').forEach(function (link) {
    link.addEventListener('click', function () {
      var base = link.getAttribute('href').replace(/&ids=\d+/g, '');
      var ids = allMatching ? [] : selectedIds();
      link.setAttribute('href', base + ids.map(function (id) { return '&ids=' + encodeURIComponent(id); }).join(''));
    });
  });
  var allLink = $('#cd-select-all-matching');
  if (allLink) { allLink.addEventListener('click', function (e) { e.preventDefault(); allMatching = true; updateSelection(); }); }
  var clearLink = $('#cd-clear-selection');
  if (clearLink) {
    clearLink.addEventListener('click', function (e) {
      e.preventDefault(); allMatching = false;
      checks().forEach(function (c) { c.checked = false; });
      updateSelection();
    });
  }
  $all('.cd-bulk-open').forEach(function (btn) {
    btn.addEventListener('click', function () {
      $all('.cd-bulk-form').forEach(function (f) { f.hidden = f.id !== btn.getAttribute('data-panel'); });
      if (btn.getAttribute('data-panel') === 'cd-bulk-reassign') { loadReassignOptions(); }
    });
  });

  // Reassign: desks and managers offered are those of the selection's project, managers narrowed
  // to the ones eligible on the chosen desk (the server checks the same rules again on submit).
  var reassignState = $('#cd-reassign-state'), reassignOptions = null;
  function option(value, label) {
    var o = document.createElement('option'); o.value = value; o.textContent = label; return o;
  }
  function resetSelect(sel) {
    var keep = sel.options[0]; sel.textContent = ''; sel.appendChild(keep); sel.value = '';
  }
  function fillManagers() {
    var managerSel = $('#bulk-manager'), deskSel = $('#bulk-desk');
    var previous = managerSel.value;
    resetSelect(managerSel);
    if (!reassignOptions) { return; }
    var allowed = deskSel.value ? reassignOptions.desk_managers[deskSel.value] || [] : null;
    reassignOptions.managers.forEach(function (m) {
      if (allowed === null || allowed.indexOf(m.id) >= 0) { managerSel.appendChild(option(m.id, m.name)); }
    });
    managerSel.value = previous;
    if (managerSel.value !== previous) { managerSel.value = ''; }
  }
  function loadReassignOptions() {
    if (!reassignState) { return; }
    var deskSel = $('#bulk-desk'), managerSel = $('#bulk-manager'), submitBtn = $('#cd-reassign-submit');
    reassignOptions = null;
    resetSelect(deskSel); resetSelect(managerSel);
    deskSel.disabled = managerSel.disabled = submitBtn.disabled = true;
    reassignState.textContent = reassignState.getAttribute('data-loading');
    var params = new URLSearchParams();
    if (allMatching) { params.append('all_matching', '1'); params.append('query', search); }
    else { selectedIds().forEach(function (id) { params.append('rowid', id); }); }
    fetch(reassignState.getAttribute('data-options-url') + '?' + params.toString(),
          { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) { return { ok: r.ok, data: data }; });
      })
      .then(function (res) {
        if (!res.ok) {
          reassignState.textContent = (res.data.errors || [reassignState.getAttribute('data-failed')]).join(' ');
          return;
        }
        reassignOptions = res.data;
        reassignState.textContent = reassignState.getAttribute('data-project') + ': ' + res.data.project.name;
        res.data.desks.forEach(function (d) { deskSel.appendChild(option(d.id, d.name)); });
        fillManagers();
        deskSel.disabled = managerSel.disabled = submitBtn.disabled = false;
      })
      .catch(function () { reassignState.textContent = reassignState.getAttribute('data-failed'); });
  }
  if (reassignState) { $('#bulk-desk').addEventListener('change', fillManagers); }

  // Background bulk jobs: poll their progress until they end, then reload (the summary is flashed).
  $all('.cd-bulk-progress').forEach(function (box) {
    function show(cls, value) { var el = $(cls, box); if (el) { el.textContent = value; } }
    function poll() {
      fetch(box.getAttribute('data-url'), { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (!d) { return; }
          show('.cd-bp-processed', d.processed); show('.cd-bp-total', d.total); show('.cd-bp-changed', d.changed);
          show('.cd-bp-out-of-scope', d.out_of_scope); show('.cd-bp-failed', d.failed);
          var bar = $('.cd-bp-bar', box);
          if (bar) { bar.max = d.total || 1; bar.value = d.processed; }
          box.setAttribute('data-status', d.status);
          if (d.status === 'done' || d.status === 'failed') {
            box.classList.remove('alert-info'); box.classList.add(d.status === 'done' ? 'alert-success' : 'alert-danger');
            setTimeout(function () { window.location.reload(); }, 1500);
            return;
          }
          setTimeout(poll, 1500);
        })
        .catch(function () { setTimeout(poll, 5000); });
    }
    setTimeout(poll, 500);
  });
  $all('.cd-bulk-cancel').forEach(function (btn) {
    btn.addEventListener('click', function () { btn.closest('form').hidden = true; });
  });
  $all('.cd-bulk-form').forEach(function (f) {
    f.addEventListener('submit', function (e) {
      var holder = $('.cd-bulk-rowids', f);
      holder.textContent = '';
      $('.cd-all-matching', f).value = allMatching ? '1' : '0';
      var ids = selectedIds();
      if (!allMatching && !ids.length) { e.preventDefault(); return; }
      if (!allMatching) {
        ids.forEach(function (id) {
          var i = document.createElement('input'); i.type = 'hidden'; i.name = 'rowid'; i.value = id; holder.appendChild(i);
        });
      }
    });
  });
  // Bulk edit: each field starts disabled with "Leave existing" ticked; Submit needs one enabled field.
  var editForm = $('#cd-bulk-edit');
  if (editForm) {
    var submit = $('#cd-bulk-edit-submit');
    function refresh() {
      var any = false;
      $all('.cd-bulk-field', editForm).forEach(function (row) {
        var leave = $('.cd-leave-existing', row).checked;
        $('.cd-bulk-input', row).disabled = leave;
        $('.cd-enabled-flag', row).disabled = leave;
        if (!leave) { any = true; }
      });
      submit.disabled = !any;
    }
    $all('.cd-leave-existing', editForm).forEach(function (c) { c.addEventListener('change', refresh); });
    refresh();
  }
  updateSelection();

  // ------------------------------------------------------------ column panel: drag to reorder (CL-LIST-6)
  var colList = $('#cd-column-list'), dragged = null;
  if (colList) {
    colList.addEventListener('dragstart', function (e) {
      dragged = e.target.closest('li'); if (!dragged) { return; }
      dragged.classList.add('cd-dragging');
      e.dataTransfer.effectAllowed = 'move';
      e.dataTransfer.setData('text/plain', dragged.getAttribute('data-column'));
    });
    colList.addEventListener('dragover', function (e) {
      var over = e.target.closest('li');
      if (!dragged || !over || over === dragged) { return; }
      e.preventDefault();
      var rect = over.getBoundingClientRect();
      colList.insertBefore(dragged, (e.clientY - rect.top) > rect.height / 2 ? over.nextSibling : over);
    });
    colList.addEventListener('drop', function (e) { e.preventDefault(); });
    colList.addEventListener('dragend', function () { if (dragged) { dragged.classList.remove('cd-dragging'); } dragged = null; });
  }

  // ------------------------------------------------------------ favourites (CL-LIST-7)
  var panel = $('#cd-fav-panel');
  function post(url, body) {
    return fetch(url, {
      method: 'POST', credentials: 'same-origin', body: body || '',
      headers: { 'X-CSRFToken': csrf, 'X-Requested-With': 'fetch', 'Accept': 'application/json',
                 'Content-Type': 'application/x-www-form-urlencoded' }
    }).then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); });
  }
  function renderFavourites(items) {
    if (!panel) { return; }
    var list = $('#cd-fav-items');
    list.textContent = '';
    items.forEach(function (f) {
      var li = document.createElement('li'); li.className = 'cd-fav-item'; li.setAttribute('data-id', f.id); li.setAttribute('data-url', f.url);
      var a = document.createElement('a'); a.href = f.url; a.className = 'cd-fav-name'; a.textContent = f.name; li.appendChild(a);
      var em = document.createElement('span'); em.className = 'cd-fav-email'; em.textContent = f.email; li.appendChild(em);
      if (f.status) { var st = document.createElement('span'); st.className = 'label cd-fav-status'; st.style.background = f.colour; st.textContent = f.status; li.appendChild(st); }
      var x = document.createElement('button'); x.type = 'button'; x.className = 'btn btn-link btn-xs cd-fav-remove'; x.setAttribute('data-url', f.remove_url); x.textContent = '×';
      li.appendChild(x);
      list.appendChild(li);
    });
    $('#cd-fav-count').textContent = items.length;
    panel.hidden = items.length < 2;
    focusIndex = Math.min(focusIndex, Math.max(items.length - 1, 0));
    showFocus();
    var ids = items.map(function (f) { return String(f.id); });
    $all('.cd-fav-toggle').forEach(function (b) {
      var on = ids.indexOf(b.closest('tr').getAttribute('data-id')) >= 0;
      b.classList.toggle('cd-fav-on', on);
      b.setAttribute('aria-pressed', on ? 'true' : 'false');
      $('i', b).className = 'fa ' + (on ? 'fa-bookmark' : 'fa-bookmark-o');
    });
  }
  $all('.cd-fav-toggle').forEach(function (b) {
    b.addEventListener('click', function () {
      post(b.getAttribute('data-url'), 'op=toggle').then(function (data) { renderFavourites(data.favourites); });
    });
  });
  var focusIndex = 0;
  function showFocus() {
    if (!panel) { return; }
    var items = $all('.cd-fav-item', panel);
    items.forEach(function (li, i) { li.classList.toggle('cd-fav-current', i === focusIndex); });
  }
  if (panel) {
    var saved = {};
    try { saved = JSON.parse(window.localStorage.getItem('cd-fav-panel') || '{}'); } catch (e) { saved = {}; }
    function setLayout(layout) {
      panel.classList.remove('cd-fav-list', 'cd-fav-grid', 'cd-fav-focus');
      panel.classList.add('cd-fav-' + layout);
      saved.layout = layout; store();
    }
    function store() { try { window.localStorage.setItem('cd-fav-panel', JSON.stringify(saved)); } catch (e) { /* private mode */ } }
    if (saved.layout) { setLayout(saved.layout); }
    if (saved.left !== undefined) { panel.style.left = saved.left + 'px'; panel.style.top = saved.top + 'px'; panel.style.right = 'auto'; panel.style.bottom = 'auto'; }
    $all('.cd-fav-layout', panel).forEach(function (b) { b.addEventListener('click', function () { setLayout(b.getAttribute('data-layout')); }); });
    panel.addEventListener('click', function (e) {
      var x = e.target.closest('.cd-fav-remove');
      if (x) {
        post(x.getAttribute('data-url'), 'op=remove').then(function (data) { renderFavourites(data.favourites); });
        return;
      }
      var item = e.target.closest('.cd-fav-item');
      if (item && !e.target.closest('a')) { window.location.href = item.getAttribute('data-url'); }
    });
    $('#cd-fav-close').addEventListener('click', function () {
      if (!window.confirm(panel.getAttribute('data-confirm'))) { return; }
      post(panel.getAttribute('data-clear-url')).then(function () { renderFavourites([]); });
    });
    $('#cd-fav-prev').addEventListener('click', function () { var n = $all('.cd-fav-item', panel).length; focusIndex = (focusIndex - 1 + n) % n; showFocus(); });
    $('#cd-fav-next').addEventListener('click', function () { var n = $all('.cd-fav-item', panel).length; focusIndex = (focusIndex + 1) % n; showFocus(); });
    showFocus();
    // Drag the panel by its header.
    var head = $('#cd-fav-head'), start = null;
    head.addEventListener('mousedown', function (e) {
      if (e.target.closest('button')) { return; }
      var rect = panel.getBoundingClientRect();
      start = { x: e.clientX - rect.left, y: e.clientY - rect.top };
      e.preventDefault();
    });
    document.addEventListener('mousemove', function (e) {
      if (!start) { return; }
      var left = Math.max(0, Math.min(window.innerWidth - 80, e.clientX - start.x));
      var top = Math.max(0, Math.min(window.innerHeight - 40, e.clientY - start.y));
      panel.style.left = left + 'px'; panel.style.top = top + 'px'; panel.style.right = 'auto'; panel.style.bottom = 'auto';
      saved.left = left; saved.top = top;
    });
    document.addEventListener('mouseup', function () { if (start) { start = null; store(); } });
  }
})();
