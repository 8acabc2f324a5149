"""The fast-filter panel of the clients list (CL-LIST-4) as HTML, built in Python.

It sits inside the list's GET form (list.html). As a Jinja include it was about a fourteenth of
the list page's time at one million clients (bench/list_bench.py): two dozen filters, each with
its branches and translated labels. Every value goes through escape(); the option lists of the
choice filters carry just the selected options (the rest load from list_choices on first use).
"""

from flask_babel import get_locale, gettext as _
from markupsafe import Markup, escape

# The panel's fixed labels (filters, date presets, text operators, its own words), translated and
# escaped once per process and language: {(language, what): …}.
_FIXED = {}


def _fixed(what, build):
    key = (str(get_locale() or "en"), what)
    found = _FIXED.get(key)
    if found is None:
        found = _FIXED[key] = build()
    return found


def option_tags(pairs, selected):
    """<option> tags for (value, label) pairs, the selected ones marked; values and labels escaped."""
    selected = {str(v) for v in selected if v is not None}
    return "".join(f'<option value="{escape(str(value))}"{" selected" if str(value) in selected else ""}>'
                   f'{escape(str(label))}</option>' for value, label in pairs)


def _attr_selected(flag):
    return " selected" if flag else ""


class _Text:
    """The panel's fixed strings, translated once per page."""

    def __init__(self):
        self.any, self.yes, self.no = escape(_("Any")), escape(_("Yes")), escape(_("No"))
        self.several = escape(_("Ctrl-click (⌘-click) to choose several"))
        self.match, self.custom_range = escape(_("Match")), escape(_("Custom range"))
        self.from_, self.to, self.contains = escape(_("From")), escape(_("To")), escape(_("contains"))
        # (not inside f-strings: the catalog extractor does not look there)
        self.filters, self.apply, self.drop = escape(_("Filters")), escape(_("Apply")), escape(_("Drop filters"))


def _bool_select(raw_key, value, t):
    key = escape(raw_key)
    return (f'<select name="{key}" id="f-{key}" class="form-control input-sm">'
            f'<option value="">{t.any}</option>'
            f'<option value="yes"{_attr_selected(value == "yes")}>{t.yes}</option>'
            f'<option value="no"{_attr_selected(value == "no")}>{t.no}</option></select>')


def _date_range(raw_key, label, args, presets, t):
    key = escape(raw_key)
    return (f'<div class="cd-date-filter">'
            f'<select name="{key}_preset" id="f-{key}" class="form-control input-sm cd-date-preset">'
            f'<option value="">{t.custom_range}</option>'
            f'{option_tags(presets, [args.get(raw_key + "_preset")])}</select>'
            f'<input type="date" name="{key}_from" class="form-control input-sm" '
            f'value="{escape(args.get(raw_key + "_from", ""))}" aria-label="{label} {t.from_}" title="{t.from_}">'
            f'<input type="date" name="{key}_to" class="form-control input-sm" '
            f'value="{escape(args.get(raw_key + "_to", ""))}" aria-label="{label} {t.to}" title="{t.to}"></div>')


def _spec_control(spec, label, choices, args, presets, text_ops, t):
    key = escape(spec.key)
    if spec.kind in ("choice", "tags"):
        # Several values: OR within this filter, AND with the other filters.
        return (f'<select name="{key}" id="f-{key}" class="form-control input-sm cd-multi" multiple size="4" '
                f'data-source="{escape(spec.choices)}" title="{t.several}">'
                f'{option_tags(choices, args.getlist(spec.key))}</select>')
    if spec.kind == "bool":
        return _bool_select(spec.key, args.get(spec.key), t)
    if spec.kind == "text":
        return (f'<div class="input-group input-group-sm"><span class="input-group-btn" style="width:auto">'
                f'<select name="{key}_op" class="form-control input-sm cd-text-op" aria-label="{t.match}">'
                f'{option_tags(text_ops, [args.get(spec.key + "_op")])}</select></span>'
                f'<input type="text" name="{key}" id="f-{key}" class="form-control" '
                f'value="{escape(args.get(spec.key, ""))}" maxlength="200"></div>')
    if spec.kind == "date":
        return _date_range(spec.key, label, args, presets, t)
    return ""


def _custom_control(key, cf, args, presets, t):
    label = escape(cf.localized_label())
    ekey = escape(key)
    if cf.field_type == "number":
        return (f'<div class="cd-range-filter">'
                f'<input type="number" step="any" name="{ekey}_from" id="f-{ekey}" class="form-control input-sm" '
                f'value="{escape(args.get(key + "_from", ""))}" aria-label="{label} {t.from_}" placeholder="{t.from_}">'
                f'<input type="number" step="any" name="{ekey}_to" class="form-control input-sm" '
                f'value="{escape(args.get(key + "_to", ""))}" aria-label="{label} {t.to}" placeholder="{t.to}"></div>')
    if cf.field_type == "date":
        return _date_range(key, label, args, presets, t)
    if cf.field_type == "boolean":
        return _bool_select(key, args.get(key), t)
    if cf.field_type in ("select", "multiselect"):
        options = cf.options or []
        size = min(max(len(options), 2), 4)
        return (f'<select name="{ekey}" id="f-{ekey}" class="form-control input-sm cd-multi" multiple '
                f'size="{size}" title="{t.several}">'
                f'{option_tags(((o, o) for o in options), args.getlist(key))}</select>')
    return (f'<input type="text" name="{ekey}" id="f-{ekey}" class="form-control input-sm" '
            f'value="{escape(args.get(key, ""))}" maxlength="200" placeholder="{t.contains}">')


def render_filter_panel(filter_specs, custom_filters, args, active_count, presets, text_ops, drop_url):
    """The <details> panel: every fixed filter, then the active custom fields, Apply and Drop filters."""
    t = _fixed("text", _Text)
    presets = _fixed("presets", lambda: [(value, str(label)) for value, label in presets.items()])
    text_ops = _fixed("text_ops", lambda: [(value, str(label)) for value, label in text_ops.items()])
    labels = _fixed(("specs", tuple(spec.key for spec, _ in filter_specs)),
                    lambda: {spec.key: escape(str(spec.label)) for spec, _ in filter_specs})
    out = [f'<details class="cd-filters" id="cd-filters"{" open" if active_count else ""}>'
           f'<summary class="btn btn-default btn-sm">{t.filters}'
           f'{f" ({active_count})" if active_count else ""}</summary><div class="cd-filter-grid">']
    for spec, choices in filter_specs:
        key = escape(spec.key)
        label = labels[spec.key]
        out.append(f'<div class="form-group cd-filter" data-filter="{key}"><label for="f-{key}">'
                   f'{label}</label>{_spec_control(spec, label, choices, args, presets, text_ops, t)}</div>')
    for key, cf in custom_filters.items():
        ekey = escape(key)
        out.append(f'<div class="form-group cd-filter" data-filter="{ekey}" data-type="{escape(cf.field_type)}">'
                   f'<label for="f-{ekey}">{escape(cf.localized_label())}</label>'
                   f'{_custom_control(key, cf, args, presets, t)}</div>')
    out.append(f'</div><button type="submit" class="btn btn-primary btn-sm" id="cd-apply-filters">'
               f'{t.apply}</button> <a href="{escape(drop_url)}" class="btn btn-default btn-sm" '
               f'id="cd-drop-filters">{t.drop}</a></details>')
    return Markup("".join(out))  # noqa: S704 - every value above went through escape()
