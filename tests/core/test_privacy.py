from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError
from core.privacy import Cipher, Pseudonymizer, Scope, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jo.doe+bot@example.co.uk please", "mail me at [email] please"),
        ("call +44 20 7946 0958 or (555) 123-4567", "call [phone number] or ([phone number]"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [card number] exp 12/29"),
        (
            "order 4111-1111-1111-1112 (not a card: fails Luhn)",
            "order 4111-1111-1111-1112 (not a card: fails Luhn)",
        ),
        ("due 03/05/2024 or 3.5.24", "due 03/05/2024 or 3.5.24"),
        ("born in 1990, 3 kids, room 12", "born in 1990, 3 kids, room 12"),
        ("the meeting is on 2024-05-03", "the meeting is on 2024-05-03"),
    ],
)
def test_redaction(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redaction_keeps_plain_text() -> None:
    text = "I failed my driving test today and I feel awful."
    assert redact(text) == text


def test_cipher_round_trip_and_errors() -> None:
    key = Cipher.new_key()
    cipher = Cipher(key)
    sealed = cipher.seal("secret diary")
    assert sealed.startswith(Cipher.PREFIX) and "secret" not in sealed
    assert cipher.open(sealed) == "secret diary"
    assert cipher.open("written before encryption") == "written before encryption"
    with pytest.raises(ConfigError, match="does not match"):
        Cipher(Cipher.new_key()).open(sealed)
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY is not set"):
        Cipher().open(sealed)
    with pytest.raises(ConfigError, match="invalid setting SOCIALBOT_ENCRYPTION_KEY"):
        Cipher("not a key")


def test_pseudonyms_are_stable_keyed_and_per_platform(tmp_path: Path) -> None:
    made = Pseudonymizer.from_setting("", tmp_path)
    key_file = tmp_path / "pseudonym.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = Pseudonymizer.from_setting("", tmp_path)
    assert made("discord", "42") == again("discord", "42")
    assert made("discord", "42") != made("telegram", "42")
    assert made("discord", "42") != Pseudonymizer(b"another key of 16+ b")("discord", "42")
    assert "user-42" not in made("discord", "user-42")  # non-hex: cannot occur by chance
    with pytest.raises(ConfigError, match="PSEUDONYM_KEY"):
        Pseudonymizer(b"short")


names = st.sampled_from(["a", "b", "c"])


@given(
    scope=st.builds(
        Scope, platform=names, private=st.booleans(), user_key=names, workspace=names, channel=names
    ),
    row=st.tuples(names, names, names, st.booleans(), names),
)
def test_admits_is_the_same_rule_as_where(
    scope: Scope, row: tuple[str, str, str, bool, str]
) -> None:
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (platform, workspace, channel, private, user_key)")
    platform, workspace, channel, private, user_key = row
    db.execute(
        "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
        (platform, workspace, channel, int(private), user_key),
    )
    where, params = scope.where()
    selected = db.execute(f"SELECT COUNT(*) FROM t WHERE {where}", params).fetchone()[0] == 1
    assert selected == scope.admits(platform, workspace, channel, private, user_key)
    assert selected == (scope.canonical() in Scope.readers(*row))
    assert scope.canonical().where() == scope.where()
