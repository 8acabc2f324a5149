"""Shipped translation catalogs cover every extracted string and compile to working translations."""

import importlib.util
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "translations"


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_catalogs", ROOT / "scripts" / "check_catalogs.py")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing: dataclasses look their module up in sys.modules.
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


check_catalogs = _load_checker()


def test_every_extracted_string_is_translated_in_every_catalog():
    reports = check_catalogs.check_catalogs()

    assert set(reports) == {"en", "es", "ru"}
    for locale, report in reports.items():
        assert report.total > 0, f"{locale}: nothing was extracted"
        assert report.problems == [], f"{locale}: " + "\n".join(report.problems)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile the .po files the way `pybabel compile` does, into a scratch directory."""
    out = tmp_path_factory.mktemp("translations")
    for locale in check_catalogs.LOCALES:
        with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").open("rb") as fileobj:
            catalog = read_po(fileobj, locale=locale)
        target = out / locale / "LC_MESSAGES"
        target.mkdir(parents=True)
        with (target / "messages.mo").open("wb") as fileobj:
            write_mo(fileobj, catalog)
    return out


@pytest.mark.parametrize(("locale", "msgid", "expected"), [
    ("es", "Clients", "Clientes"),
    ("ru", "Clients", "Клиенты"),
    ("es", "Save", "Guardar"),
    ("ru", "Save", "Сохранить"),
    ("en", "Clients", "Clients"),
])
def test_compiled_catalogs_translate_known_strings(compiled, locale, msgid, expected):
    assert Translations.load(str(compiled), [locale]).gettext(msgid) == expected


def test_compiled_catalogs_keep_named_placeholders(compiled):
    translations = Translations.load(str(compiled), ["ru"])

    text = translations.gettext("E-mail in use by: %(name)s (%(uid)s).") % {"name": "Ann Lee", "uid": "C-1"}

    assert "Ann Lee" in text and "C-1" in text


def _catalog(*entries, locale="es"):
    catalog = Catalog(locale=locale)
    for msgid, msgstr, flags in entries:
        catalog.add(msgid, msgstr, flags=flags)
    return catalog


def test_checker_reports_missing_empty_fuzzy_and_broken_placeholders():
    template = _catalog(("Clients", None, ()), ("Save", None, ()), ("Back", None, ()),
                        ("Hello %(name)s", None, ()), ("Gone", None, ()), locale=None)
    catalog = _catalog(("Clients", "Clientes", ()), ("Save", "", ()), ("Back", "Volver", ("fuzzy",)),
                       ("Hello %(name)s", "Hola %(nombre)s", ()))

    total, problems = check_catalogs.check_catalog(template, catalog)

    assert total == 5
    assert "untranslated: 'Save'" in problems
    assert "fuzzy: 'Back'" in problems
    assert "missing: 'Gone'" in problems
    assert any(p.startswith("placeholders differ: 'Hello %(name)s'") for p in problems)
    assert not any("'Clients'" in p for p in problems)


def test_checker_accepts_russian_plural_forms():
    template = _catalog((("%(num)d client", "%(num)d clients"), None, ()), locale=None)
    catalog = _catalog((("%(num)d client", "%(num)d clients"),
                        ("%(num)d клиент", "%(num)d клиента", "%(num)d клиентов"), ()), locale="ru")

    assert check_catalogs.check_catalog(template, catalog) == (1, [])
