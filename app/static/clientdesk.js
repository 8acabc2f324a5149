/* ClientDesk: small progressive enhancements; every page works without them. */
(function () {
  'use strict';
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  var form = $('#cd-client-form');
  if (form) {
    // Desks and managers: offer only those that fit the chosen project and desk (CL-ORG-2).
    var project = $('#project_id'), desk = $('#desk_id'), manager = $('#manager_id');
    var fixedProject = form.getAttribute('data-project');
    function currentProject() { return project ? project.value : (desk && desk.getAttribute('data-fixed-project')) || fixedProject; }
    function filter() {
      var p = currentProject();
      if (desk) {
        $all('option[data-project]', desk).forEach(function (o) {
          var ok = !p || o.getAttribute('data-project') === p;
          o.hidden = !ok; o.disabled = !ok;
          if (!ok && o.selected) { desk.value = ''; }
        });
      }
      if (manager) {
        var d = desk ? desk.value : '';
        $all('option[data-projects]', manager).forEach(function (o) {
          var ps = (o.getAttribute('data-projects') || '').split(' ');
          var ds = (o.getAttribute('data-desks') || '').split(' ');
          var wide = (o.getAttribute('data-wide') || '').split(' ');
          var ok = (!p || ps.indexOf(p) >= 0) && (!d || ds.indexOf(d) >= 0 || wide.indexOf(p) >= 0);
          o.hidden = !ok; o.disabled = !ok;
          if (!ok && o.selected) { manager.value = ''; }
        });
      }
    }
    if (project) { project.addEventListener('change', filter); }
    if (desk) { desk.addEventListener('change', filter); }
    filter();

    // Password: show/hide and Generate (CL-REC-6).
    var pw = $('#password'), toggle = $('#cd-pw-toggle'), gen = $('#cd-pw-generate');
    if (toggle && pw) {
      toggle.addEventListener('click', function () {
        var show = pw.type === 'password';
        pw.type = show ? 'text' : 'password';
        toggle.textContent = show ? toggle.getAttribute('data-hide') : toggle.getAttribute('data-show');
      });
    }
    if (gen && pw) {
      gen.addEventListener('click', function () {
        fetch(gen.getAttribute('data-url'), { credentials: 'same-origin' })
          .then(function (r) { return r.json(); })
          .then(function (data) { pw.value = data.password; pw.type = 'text'; if (toggle) { toggle.textContent = toggle.getAttribute('data-hide'); } dirty = true; });
      });
    }

    // Description counter (≤ 2000).
    var desc = $('#description'), counter = $('#cd-desc-count');
    function count() { if (desc && counter) { counter.textContent = desc.value.length + ' / ' + counter.getAttribute('data-max'); } }
    if (desc) { desc.addEventListener('input', count); count(); }

    // Meta key/value rows.
    var rows = $('#cd-meta-rows'), add = $('#cd-meta-add');
    function removeHandler(e) { if (e.target.classList.contains('cd-meta-remove')) { e.target.parentNode.remove(); dirty = true; } }
    if (rows) { rows.addEventListener('click', removeHandler); }
    if (add && rows) {
      add.addEventListener('click', function () {
        var div = document.createElement('div');
        div.className = 'cd-meta-row form-inline';
        var k = document.createElement('input'); k.name = 'meta_key'; k.className = 'form-control input-sm'; k.placeholder = add.getAttribute('data-key');
        var v = document.createElement('input'); v.name = 'meta_value'; v.className = 'form-control input-sm'; v.placeholder = add.getAttribute('data-value');
        var x = document.createElement('button'); x.type = 'button'; x.className = 'btn btn-xs btn-default cd-meta-remove'; x.textContent = '×';
        div.appendChild(k); div.appendChild(document.createTextNode(' ')); div.appendChild(v); div.appendChild(document.createTextNode(' ')); div.appendChild(x);
        rows.appendChild(div); k.focus();
      });
    }

    // Multi-select custom fields: the chosen values as chips, overflow folded into "+N more" (CL-REC-7).
    $all('select.cd-multiselect').forEach(function (select) {
      var box = document.createElement('div');
      box.className = 'cd-chips';
      select.parentNode.insertBefore(box, select.nextSibling);
      var expanded = false;
      function render() {
        box.textContent = '';
        var chosen = $all('option', select).filter(function (o) { return o.selected; });
        var shown = expanded ? chosen : chosen.slice(0, 3);
        shown.forEach(function (o) {
          var chip = document.createElement('span');
          chip.className = 'label label-info cd-chip';
          chip.textContent = o.textContent;
          box.appendChild(chip);
        });
        if (chosen.length > shown.length) {
          var more = document.createElement('a');
          more.href = '#';
          more.className = 'cd-chip-more';
          more.textContent = (box.parentNode.getAttribute('data-more') || '+%n').replace('%n', chosen.length - shown.length);
          more.addEventListener('click', function (e) { e.preventDefault(); expanded = true; render(); });
          box.appendChild(more);
        }
      }
      select.addEventListener('change', render);
      render();
    });

    // Leaving with unsaved changes asks first.
    var dirty = false;
    form.addEventListener('input', function () { dirty = true; });
    form.addEventListener('submit', function () { dirty = false; });
    window.addEventListener('beforeunload', function (e) { if (dirty) { e.preventDefault(); e.returnValue = form.getAttribute('data-dirty-warning'); } });
  }

  // Action form (CL-CARD-2): the type decides subtypes, Completed default, date and responsible.
  var actionForm = $('#cd-action-form');
  if (actionForm) {
    var type = $('#type_id'), subtype = $('#subtype'), completed = $('#completed');
    function applyType(initial) {
      var opt = type.options[type.selectedIndex];
      var kind = opt ? opt.getAttribute('data-kind') : '';
      var subs = opt && opt.getAttribute('data-subtypes') ? opt.getAttribute('data-subtypes').split('|') : [];
      var keep = initial ? subtype.getAttribute('data-selected') : '';
      subtype.textContent = '';
      var blank = document.createElement('option'); blank.value = ''; blank.textContent = '—'; subtype.appendChild(blank);
      subs.forEach(function (s) { var o = document.createElement('option'); o.value = s; o.textContent = s; if (s === keep) { o.selected = true; } subtype.appendChild(o); });
      if (!initial && opt && opt.value) { completed.checked = opt.getAttribute('data-completed') === 'y'; }
      $('#group-action_date').hidden = kind !== 'call';
      $('#group-responsible_id').hidden = !(kind === 'call' || kind === 'comment');
    }
    type.addEventListener('change', function () { applyType(false); });
    applyType(true);
  }
})();
