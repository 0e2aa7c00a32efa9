import pytest

from proxy.phone import InvalidNumber, from_webhook, mask, normalize, region_of


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+44 20 7946 0000", None, "442079460000"),
        ("0044 20 7946 0000", None, "442079460000"),
        ("442079460000", None, "442079460000"),
        ("020 7946 0000", "GB", "442079460000"),
        ("2015550123", "US", "12015550123"),
        ("+1 (201) 555-0100", None, "12015550100"),
        ("12015550123", "GB", "12015550123"),
    ],
)
def test_normalize_accepts_what_people_type(raw, country, expected):
    assert normalize(raw, country=country) == expected


def test_formatted_national_number_reads_in_the_default_country_first():
    assert normalize("(201) 555-0123", default_country="US") == "12015550123"
    assert normalize("201 555 0123", default_country="US") == "12015550123"
    # bare digits are read as Vonage writes them: internationally first
    assert normalize("442079460000", default_country="US") == "442079460000"


def test_national_number_falls_back_to_default_country():
    assert normalize("020 7946 0000", default_country="GB") == "442079460000"


@pytest.mark.parametrize("raw", ["", "   ", "hello", "+44 7700 900123", "07700 900123", "+1 555", "0044"])
def test_normalize_rejects_invalid_and_merely_possible_numbers(raw):
    with pytest.raises(InvalidNumber):
        normalize(raw, country="GB")


def test_national_number_without_any_country_is_rejected():
    with pytest.raises(InvalidNumber, match="country"):
        normalize("020 7946 0000")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("447400123456", "447400123456"),
        ("+44 7400 123456", "447400123456"),
        ("Unknown", None),
        ("", None),
        (None, None),
        ("sip:alice@example.com", None),
        ({"x": 1}, None),
        ("12", None),
    ],
)
def test_from_webhook(raw, expected):
    assert from_webhook(raw) == expected


def test_mask_hides_the_middle():
    assert mask("447700900123") == "44770****123"
    assert "0101" not in mask("12015550101")


def test_region_of():
    assert region_of("447400123456") == "GB"
    assert region_of("12015550100") == "US"
