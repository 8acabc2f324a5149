"""Value normalisers: canonical forms and clear refusals (no app, no database)."""

import datetime as dt

import pytest
from hypothesis import given, settings, strategies as st

from app.core import validators as v


@pytest.mark.parametrize("raw,expected", [
    ("  Anna.Smith@Example.ORG ", "anna.smith@example.org"),
    ("x+tag@gmail.com", "x+tag@gmail.com"),
])
def test_email_is_trimmed_and_lower_cased(raw, expected):
    assert v.normalize_email(raw) == expected


@pytest.mark.parametrize("raw,message", [
    ("", "E-mail is required."),
    ("not-an-email", "Enter a valid e-mail address, like name@example.com."),
    ("a@b", "Enter a valid e-mail address, like name@example.com."),
])
def test_email_errors(raw, message):
    with pytest.raises(ValueError) as err:
        v.normalize_email(raw)
    assert str(err.value) == message


@pytest.mark.parametrize("raw,expected", [
    ("+49 1512 3456789", "+4915123456789"),
    ("+1 (415) 555-2671", "+14155552671"),
])
def test_phone_is_stored_in_e164(raw, expected):
    assert v.normalize_phone(raw) == expected


@pytest.mark.parametrize("raw,message", [
    ("12345", "Enter the phone number in international format, like +14155550123."),
    ("+1 555 0000", "This phone number is not valid for its country."),
])
def test_phone_errors(raw, message):
    with pytest.raises(ValueError) as err:
        v.normalize_phone(raw)
    assert str(err.value) == message


@pytest.mark.parametrize("raw", ["DE", "de", "DEU", "deu", "Germany", "germany"])
def test_country_accepts_iso2_iso3_and_name(raw):
    assert v.normalize_country(raw) == "DE"


def test_country_error():
    with pytest.raises(ValueError) as err:
        v.normalize_country("Atlantis")
    assert str(err.value) == "Unknown country: choose one from the list (ISO 3166)."


def test_birth_date_must_be_in_the_past():
    today = dt.date(2026, 11, 23)
    assert v.check_birth_date("1990-05-01", today) == dt.date(1990, 5, 1)
    with pytest.raises(ValueError) as err:
        v.check_birth_date("2026-11-23", today)
    assert str(err.value) == "The date of birth must be in the past."
    with pytest.raises(ValueError):
        v.check_birth_date("31-31-2000", today)


@pytest.mark.parametrize("pw,missing", [
    ("short1!", "at least 8 characters"),
    ("alllower1!", "an upper-case letter"),
    ("ALLUPPER1!", "a lower-case letter"),
    ("NoDigits!!", "a digit"),
    ("NoSpecial12", "a special character"),
])
def test_password_complexity_explains_what_is_missing(pw, missing):
    with pytest.raises(ValueError) as err:
        v.check_password(pw)
    assert missing in str(err.value)


def test_generated_passwords_always_pass():
    for _ in range(200):
        assert v.check_password(v.generate_password()) is not None


def test_text_refuses_control_and_bidi_characters():
    for bad in ["a\u0000b", "evil\u202etxt", "two\nlines"]:
        with pytest.raises(ValueError):
            v.clean_text(bad, 100)
    assert v.clean_text("  multi\nline ", 100, multiline=True) == "multi\nline"
    with pytest.raises(ValueError) as err:
        v.clean_text("x" * 11, 10)
    assert "at most 10 characters" in str(err.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_validators_are_total(text):
    """Any input either normalises or raises ValueError: never another exception (R21)."""
    for fn in (v.normalize_email, v.normalize_phone, v.normalize_country, v.check_password, v.parse_date,
               lambda x: v.clean_text(x, 50)):
        try:
            fn(text)
        except ValueError:
            pass


def _reference_email(raw):
    """email-validator alone (the fast path in normalize_email must agree with it everywhere)."""
    from email_validator import EmailNotValidError, validate_email
    value = v.clean_text(raw, 254)
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


_LOCAL_ALPHABET = "abcXYZ019._%+-!#'&\u00e9 \"@"
_DOMAIN_PARTS = ["example.com", "EXAMPLE.org", "gmail.com", "mail.ru", "localhost", "test", "a.invalid", "x.y",
                 "-bad.com", "bad-.com", "a..b.com", "xn--bcher-kva.de", "b\u00fccher.de", "1.2.3.4", "[1.2.3.4]",
                 "com", "a" * 64 + ".com", "a" * 63 + ".com", "sub.domain.co.uk", "under_score.com", "x.123"]


@settings(max_examples=400, deadline=None)
@given(local=st.text(alphabet=_LOCAL_ALPHABET, min_size=0, max_size=70),
       domain=st.one_of(st.sampled_from(_DOMAIN_PARTS), st.text(alphabet="abc-.9XZ", min_size=1, max_size=20)))
def test_email_fast_path_agrees_with_email_validator(local, domain):
    raw = f"{local}@{domain}"
    if not v.clean_text(raw, None) or len(v.clean_text(raw)) > 254 or v._FORBIDDEN.search(raw):
        return
    expected = _reference_email(raw)
    if expected is None:
        with pytest.raises(ValueError):
            v.normalize_email(raw)
    else:
        assert v.normalize_email(raw) == expected


def test_email_fast_path_long_addresses_match_the_library():
    for local_len, domain in [(64, "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + ".com"), (65, "example.com"),
                              (60, ("a" * 60 + ".") * 3 + "com")]:
        raw = "x" * local_len + "@" + domain
        expected = _reference_email(raw) if len(raw) <= 254 else None
        if expected is None:
            with pytest.raises(ValueError):
                v.normalize_email(raw)
        else:
            assert v.normalize_email(raw) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.dates(min_value=dt.date(1, 1, 1)).map(lambda d: d.strftime("%Y-%m-%d")),
                 st.text(alphabet="0123456789-", min_size=10, max_size=10)))
def test_iso_date_fast_path_agrees_with_strptime(text):
    try:
        expected = dt.datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        expected = None
    if expected is not None:
        assert v.parse_date(text) == expected
    else:
        try:
            parsed = v.parse_date(text)
        except ValueError:
            return
        # not ISO: only another accepted layout may have matched
        assert any(_parses(text, fmt) == parsed for fmt in ("%d.%m.%Y", "%d/%m/%Y", "%Y/%m/%d", "%m/%d/%Y"))


def _parses(text, fmt):
    try:
        return dt.datetime.strptime(text, fmt).date()
    except ValueError:
        return None
