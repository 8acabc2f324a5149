"""Fail when a shipped translation catalog misses, leaves empty, marks fuzzy or mangles a string."""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po, write_po

try:  # Babel >= 2.14
    from babel.messages.frontend import parse_mapping_cfg
except ImportError:  # pragma: no cover - older Babel
    from babel.messages.frontend import parse_mapping as parse_mapping_cfg

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "app"
MAPPING_FILE = ROOT / "babel.cfg"
TRANSLATIONS_DIR = ROOT / "translations"
DOMAIN = "messages"
LOCALES = ("en", "es", "ru")
# Same keywords as `make extract-translations` (babel's defaults cover ngettext and friends).
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None, "_l": None, "gettext": None, "_": None}
# Named (%(name)s) and positional (%s, %d) printf-style placeholders.
PLACEHOLDER = re.compile(r"%(?:\([A-Za-z0-9_]+\))?[-#0 +]*\d*(?:\.\d+)?[sdifrxXeEgGc%]")


@dataclass
class LocaleReport:
    locale: str
    total: int = 0
    problems: list[str] = field(default_factory=list)


def extract_catalog() -> Catalog:
    """Extract every translatable string under app/ into a fresh catalog (what pybabel extract sees)."""
    with MAPPING_FILE.open(encoding="utf-8") as fileobj:
        method_map, options_map = parse_mapping_cfg(fileobj, filename=str(MAPPING_FILE))
    catalog = Catalog(domain=DOMAIN)
    for filename, lineno, message, comments, context in extract_from_dir(
        str(SOURCE_DIR), method_map, options_map, keywords=KEYWORDS
    ):
        catalog.add(message, None, [(f"app/{filename}", lineno)], auto_comments=comments, context=context)
    return catalog


def write_template(catalog: Catalog, path: Path) -> None:
    with path.open("wb") as fileobj:
        write_po(fileobj, catalog)


def _placeholders(text: str) -> list[str]:
    return sorted(p for p in PLACEHOLDER.findall(text) if p != "%%")


def _as_tuple(value) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def check_catalog(template: Catalog, catalog: Catalog) -> tuple[int, list[str]]:
    """Compare one translated catalog with the extracted template: (strings checked, problems)."""
    total, problems = 0, []
    for message in template:
        if not message.id:
            continue
        total += 1
        ids = _as_tuple(message.id)
        label = repr(ids[0])
        translated = catalog.get(message.id, context=message.context)
        if translated is None:
            problems.append(f"missing: {label}")
            continue
        if translated.fuzzy:
            problems.append(f"fuzzy: {label}")
            continue
        strings = _as_tuple(translated.string)
        if not strings or any(not s for s in strings):
            problems.append(f"untranslated: {label}")
            continue
        for index, text in enumerate(strings):
            # Form 0 answers the singular msgid, every other form the plural one.
            wanted = _placeholders(ids[0] if index == 0 else ids[-1])
            got = _placeholders(text)
            if len(ids) > 1:
                # A plural form may repeat or drop the bare count, never a named value.
                if {p for p in wanted if "(" in p} != {p for p in got if "(" in p}:
                    problems.append(f"placeholders differ in plural form {index}: {label} -> {text!r}")
            elif got != wanted:
                problems.append(f"placeholders differ: {label} -> {text!r} (expected {wanted}, got {got})")
    for message, errors in catalog.check():
        problems.extend(f"invalid: {_as_tuple(message.id)[0]!r}: {error}" for error in errors)
    return total, problems


def check_locale(template: Catalog, locale: str) -> LocaleReport:
    report = LocaleReport(locale)
    po_path = TRANSLATIONS_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po_path.exists():
        report.problems.append(f"catalog not found: {po_path.relative_to(ROOT)}")
        return report
    with po_path.open("rb") as fileobj:
        catalog = read_po(fileobj, locale=locale)
    report.total, report.problems = check_catalog(template, catalog)
    return report


def check_catalogs(locales=LOCALES) -> dict[str, LocaleReport]:
    """Re-extract from the current code and check each locale's catalog against it."""
    template = extract_catalog()
    with tempfile.TemporaryDirectory() as tmp:
        # Round-trip through a .pot so the check sees exactly what pybabel would write.
        pot_path = Path(tmp) / f"{DOMAIN}.pot"
        write_template(template, pot_path)
        with pot_path.open("rb") as fileobj:
            template = read_po(fileobj)
    return {locale: check_locale(template, locale) for locale in locales}


def main() -> int:
    reports = check_catalogs()
    failed = False
    for locale, report in reports.items():
        if report.problems:
            failed = True
            print(f"{locale}: FAILED, {len(report.problems)} problem(s) in {report.total} strings", file=sys.stderr)
            for problem in report.problems:
                print(f"  {problem}", file=sys.stderr)
        else:
            print(f"{locale}: OK, {report.total}/{report.total} strings translated")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
