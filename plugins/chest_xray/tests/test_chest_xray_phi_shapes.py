"""PHI by its shape: local phone numbers without an area code, international numbers,
dates with month words in several languages, European addresses, titles in other
languages; and the measurements, ranges and levels that look a little like them stay."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinlens_chest_xray.phi_text import scrub_text


@pytest.mark.parametrize("text, planted", [
    ("Called the ward at 555-0199 with the result.", "555-0199"),
    ("Paged 555.0134 twice.", "555.0134"),
    ("Callback 555 0188 please.", "555 0188"),
    ("Reach her on 867-5309.", "867-5309"),
    ("Results phoned to 555-0101.", "555-0101"),
])
def test_seven_digit_phone_numbers_go(text, planted) -> None:
    clean = scrub_text(text)
    assert planted not in clean and "[PHONE]" in clean, clean


@pytest.mark.parametrize("text", [
    "Nodule 5.5-6.0 cm, previously 4.8 cm.", "Effusion 120-150 mL at 2-3 cm depth.", "Degenerative change at T4-T5 and C5-6.",
    "Tube 1.5-2.0 cm above the carina.", "Density 100-1000 HU.", "Drained 250-1000 mL.", "Heart rate 110-120.",
    "Follow-up in 3-6 months.", "Score 8/10.", "Level 2.5-3.5 mmol/L.",
])
def test_measurements_ranges_and_levels_stay(text) -> None:
    assert scrub_text(text) == text


def test_a_date_with_dashes_is_a_date_not_a_phone() -> None:
    assert scrub_text("Seen 2021-03-14 and 14-03-2021.") == "Seen [DATE] and [DATE]."


@given(exchange=st.integers(200, 999), line=st.integers(0, 9999), separator=st.sampled_from(["-", "."]),
       lead=st.sampled_from(["Call the ward at", "Paged", "Callback", "Phone"]))
def test_any_local_number_goes(exchange, line, separator, lead) -> None:
    number = f"{exchange}{separator}{line:04d}"
    assert number not in scrub_text(f"{lead} {number} with the result.")


@given(low=st.integers(0, 99), low_decimal=st.integers(0, 9), high=st.integers(0, 99), high_decimal=st.integers(0, 9),
       unit=st.sampled_from(["cm", "mm", "mL", "HU", "%"]))
def test_any_measured_range_stays(low, low_decimal, high, high_decimal, unit) -> None:
    text = f"Nodule {low}.{low_decimal}-{high}.{high_decimal} {unit} in the left upper lobe."
    assert scrub_text(text) == text


@pytest.mark.parametrize("text, planted", [
    ("Contact +44 20 7946 0958.", "7946 0958"), ("Mobile +49 151 2345 6789.", "2345 6789"),
    ("Tel +33 1 42 68 53 00.", "42 68 53"), ("mobile 0171 2345678", "2345678"),
])
def test_international_and_labelled_numbers_go(text, planted) -> None:
    assert planted not in scrub_text(text)


@pytest.mark.parametrize("written", [
    "3. Januar 2022", "14 février 2021", "2 de marzo de 2020", "12 maggio 2019", "5 mei 2018", "11-MAR-2024",
    "05-Sep-1973", "Sept. 5th, 1973", "1 août 2020", "7 outubro 2021",
])
def test_dates_with_month_words_in_several_languages_go(written) -> None:
    assert scrub_text(f"Prior study of {written}; stable.") == "Prior study of [DATE]; stable."


@pytest.mark.parametrize("text, planted", [
    ("Wohnhaft Hauptstraße 12, 10115 Berlin.", ["Hauptstraße", "10115", "Berlin"]),
    ("Lives at Berliner Straße 5.", ["Berliner Straße 5"]),
    ("Adresse 12 rue de la Paix, 75002 Paris.", ["rue de la Paix", "75002", "Paris"]),
    ("Vive en Calle Mayor 5, 28013 Madrid.", ["Calle Mayor", "28013", "Madrid"]),
    ("Abita in Via Roma 12, 00184 Roma.", ["Via Roma", "00184"]),
    ("Lives at 42 Wallaby Crescent, Springfield, MA 01103.", ["Wallaby", "Springfield", "01103"]),
])
def test_addresses_in_several_countries_go(text, planted) -> None:
    clean = scrub_text(text)
    for piece in planted:
        assert piece not in clean, clean


@pytest.mark.parametrize("text, planted", [
    ("Befund an Herr Dr. Schneider-Ahrens.", "Schneider-Ahrens"), ("Sra. Fernández informed.", "Fernández"),
    ("Mme Lefèvre agreed.", "Lefèvre"), ("Frau Oberhuber called.", "Oberhuber"), ("Sig.ra Esposito came.", "Esposito"),
    ("Patient José García.", "García"),
])
def test_titles_in_other_languages_reveal_names(text, planted) -> None:
    assert planted not in scrub_text(text)


@given(st.sampled_from([
    "Quentin Zyx tolerated the exam at 555-0199 on 3. Januar 2022.",
    "Wohnhaft Hauptstraße 12, 10115 Berlin; Sra. Fernández; +44 20 7946 0958.",
    "José García Pérez, MRN 5531298, DOB 17.02.1958, Kerley B lines.",
]))
def test_scrubbing_twice_changes_nothing_more(text) -> None:
    once = scrub_text(text)
    assert scrub_text(once) == once
