"""Domain-free value normalisers: each returns the canonical value or raises ValueError(message).

Messages are lazily translated strings; services collect them per field.
"""

import datetime as dt
import functools
import re
import secrets
import string
import unicodedata
from contextlib import contextmanager

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email
from flask_babel import lazy_gettext as _l

# Control characters and bidi overrides have no place in names or identifiers (R21).
_FORBIDDEN = re.compile("[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u202a-\u202e\u2066-\u2069]")


def clean_text(value, max_length=None, multiline=False):
    """Trim, NFC-normalise, refuse control/bidi characters and enforce a length; '' becomes None."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if value.isascii():
        # ASCII is its own NFC form, and printable ASCII holds none of the refused characters
        value = value.strip()
        plain = value.isprintable()
    else:
        value = unicodedata.normalize("NFC", value).strip()
        plain = False
    if not value:
        return None
    if not plain:
        check = value.replace("\n", "").replace("\r", "").replace("\t", "") if multiline else value
        if _FORBIDDEN.search(check) or (not multiline and ("\n" in value or "\r" in value)):
            raise ValueError(_l("Contains characters that are not allowed."))
    if max_length and len(value) > max_length:
        raise ValueError(_l("Must be at most %(max)d characters (now %(n)d).", max=max_length, n=len(value)))
    return value


# A plain ASCII dot-atom local part: a strict subset of what email-validator accepts, so the
# library's verdict on such an address depends only on its domain (cached) and its length.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*")


@functools.lru_cache(maxsize=4096)
def _domain_verdict(domain):
    """email-validator's normalised form of `domain`, or None when it refuses the domain."""
    try:
        return validate_email("a@" + domain, check_deliverability=False).domain
    except EmailNotValidError:
        return None


def normalize_email(value):
    value = clean_text(value, 254)
    if not value:
        raise ValueError(_l("E-mail is required."))
    local, at, domain = value.rpartition("@")
    if at and len(local) <= 64 and _PLAIN_LOCAL.fullmatch(local) and domain.isascii():
        # Fast path for the common shape (imports validate millions): same verdict, same result.
        normalized_domain = _domain_verdict(domain)
        if normalized_domain is not None and len(local) + 1 + len(normalized_domain) <= 254:
            return f"{local}@{normalized_domain}".lower()
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError(_l("Enter a valid e-mail address, like name@example.com."))
    return result.normalized.lower()


# Numbers this very function already normalised, ahead of use, in a bulk caller's helper process
# (see normalize_phones): raw value -> E.164. Only valid numbers are kept, so a miss (or anything
# else) is computed as usual; the entries are exactly what the computation returns.
_phones_ahead = {}


@contextmanager
def phones_ahead(known):
    """Let normalize_phone answer from `known` ({raw: E.164}, from normalize_phones) inside the block."""
    global _phones_ahead
    saved, _phones_ahead = _phones_ahead, known
    try:
        yield
    finally:
        _phones_ahead = saved


def normalize_phones(values):
    """{value: E.164} for the valid numbers among `values`: normalize_phone, run for a bulk caller
    (the import runs it in a helper process on the next chunk while it validates this one)."""
    out = {}
    for value in values:
        try:
            number = normalize_phone(value)
        except ValueError:
            continue
        if number:
            out[value] = number
    return out


def normalize_phone(value, default_region=None):
    """Parse a phone number and return it in E.164 (+14155550123)."""
    if default_region is None and _phones_ahead and isinstance(value, str):
        known = _phones_ahead.get(value)
        if known is not None:
            return known
    value = clean_text(value, 40)
    if not value:
        return None
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        raise ValueError(_l("Enter the phone number in international format, like +14155550123."))
    if not phonenumbers.is_valid_number(number):
        raise ValueError(_l("This phone number is not valid for its country."))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_country(value):
    """Accept an ISO 3166 alpha-2, alpha-3 or English name (any case); return alpha-2."""
    if isinstance(value, str):
        return _country_of_text(value)  # a file repeats a few hundred spellings a million times
    return _normalize_country(value)


@functools.lru_cache(maxsize=4096)
def _country_of_text(value):
    return _normalize_country(value)


def _normalize_country(value):
    value = clean_text(value, 100)
    if not value:
        return None
    country = None
    if len(value) == 2:
        country = pycountry.countries.get(alpha_2=value.upper())
    elif len(value) == 3:
        country = pycountry.countries.get(alpha_3=value.upper())
    if country is None:
        try:
            country = pycountry.countries.lookup(value)
        except LookupError:
            country = None
    if country is None:
        raise ValueError(_l("Unknown country: choose one from the list (ISO 3166)."))
    return country.alpha_2


def country_name(code, locale=None):
    """Country name for display, translated with Babel's locale data when available."""
    if not code:
        return ""
    name = _territories(str(locale or "en")).get(code)
    if name:
        return name
    country = pycountry.countries.get(alpha_2=code)
    return country.name if country else code


@functools.lru_cache(maxsize=32)
def _territories(locale):
    """CLDR territory names of one language (parsing the locale costs more than the lookup)."""
    try:
        from babel import Locale
        return dict(Locale.parse(locale).territories)
    except (ValueError, TypeError, LookupError):  # unknown locale: fall back to English
        return {}


def country_choices(locale=None):
    return list(_country_choices(str(locale or "en")))


@functools.lru_cache(maxsize=32)
def _country_choices(locale):
    # ~250 names from CLDR per call: computed once per language (every list page offers them)
    return tuple(sorted(((c.alpha_2, country_name(c.alpha_2, locale)) for c in pycountry.countries),
                        key=lambda x: x[1]))


def parse_date(value):
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = clean_text(value, 40)
    if text is None:
        return None
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and text.isascii():
        try:  # ISO dates (the export's and most files' form) without strptime's cost
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    for fmt in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%Y/%m/%d", "%m/%d/%Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(_l("Enter a date as YYYY-MM-DD."))


def check_birth_date(value, today=None):
    value = parse_date(value)
    if value is None:
        return None
    today = today or dt.date.today()
    if value >= today:
        raise ValueError(_l("The date of birth must be in the past."))
    if value.year < 1900:
        raise ValueError(_l("The date of birth is too far in the past."))
    return value


PASSWORD_SPECIALS = "!@#$%^&*()-_=+[]{};:,.<>/?~"


def check_password(value):
    """Complexity of CL-REC-6: ≥ 8 characters with upper, lower, digit and special character."""
    if value is None or value == "":
        return None
    problems = []
    if len(value) < 8:
        problems.append(_l("at least 8 characters"))
    if len(value) > 128:
        raise ValueError(_l("The password must be at most 128 characters."))
    if not re.search(r"[A-Z]", value):
        problems.append(_l("an upper-case letter"))
    if not re.search(r"[a-z]", value):
        problems.append(_l("a lower-case letter"))
    if not re.search(r"\d", value):
        problems.append(_l("a digit"))
    if not re.search(r"[^A-Za-z0-9]", value):
        problems.append(_l("a special character"))
    if problems:
        raise ValueError(_l("The password needs %(missing)s.", missing=", ".join(str(p) for p in problems)))
    return value


def generate_password(length=14):
    """A random password that always satisfies check_password."""
    alphabet = string.ascii_letters + string.digits + PASSWORD_SPECIALS
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(length))
        try:
            check_password(pw)
            return pw
        except ValueError:
            continue


def check_choice(value, choices, label_map=None):
    if value in (None, ""):
        return None
    value = str(value).strip().lower()
    if value not in choices:
        raise ValueError(_l("Choose one of: %(choices)s.", choices=", ".join(
            str((label_map or {}).get(c, c)) for c in choices)))
    return value
