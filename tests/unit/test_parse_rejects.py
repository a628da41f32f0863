"""Bodies that are not WhatsApp notifications raise DecodeError with a reason, and nothing else."""

from __future__ import annotations

import pytest

from wahook.errors import WahookError
from wahook.parse import DecodeError, decode

ENVELOPE = b'{"object":"whatsapp_business_account","entry":[]}'


def reject(body: bytes | str) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(body)
    return info.value


@pytest.mark.parametrize("body", [b"", b"   ", b" \r\n\t ", "", "\n"])
def test_empty_or_whitespace(body: bytes | str) -> None:
    assert reject(body).reason.startswith("empty body")


@pytest.mark.parametrize(
    ("body", "position"),
    [
        (b'{"object": tru}', 11),
        (b'{"object":"whatsapp_business_account","entry":[],}', 49),
        (b'{"object" "x"}', 10),
        (b'{"object":"whatsapp_business_account","entry":[\x00]}', 47),
    ],
)
def test_invalid_json_says_where(body: bytes, position: int) -> None:
    err = reject(body)
    assert err.reason.startswith("invalid JSON")
    assert err.position is not None
    assert abs(err.position - position) <= 4
    assert f"at byte {err.position}" in str(err)


def test_truncated_body_points_at_its_end() -> None:
    body = ENVELOPE[:-5]
    err = reject(body)
    assert err.reason.startswith("invalid JSON")
    assert err.position == len(body)


def test_trailing_garbage() -> None:
    err = reject(ENVELOPE + b" x")
    assert "trailing" in err.reason
    assert err.position is not None
    assert len(ENVELOPE) <= err.position <= len(ENVELOPE) + 2


def test_two_documents_back_to_back() -> None:
    assert "trailing" in reject(ENVELOPE + ENVELOPE).reason


@pytest.mark.parametrize(
    "body",
    [
        b"\xff" + ENVELOPE,
        ENVELOPE[:-2] + b'"\xc3"]}',
        ENVELOPE.replace(b"account", b"acc\xed\xa0\x80"),
    ],
)
def test_invalid_utf8(body: bytes) -> None:
    err = reject(body)
    assert err.reason == "body is not valid UTF-8"
    assert err.position is not None


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity(constant: bytes) -> None:
    body = ENVELOPE.replace(b"[]", b"[" + constant + b"]")
    assert "NaN and Infinity" in reject(body).reason


def test_nan_in_a_body_with_lone_surrogates_too() -> None:
    # that body goes through json.loads, which would accept NaN by default
    body = b'{"object":"whatsapp_business_account","x":"\\ud800","entry":[NaN]}'
    assert "NaN" in reject(body).reason


@pytest.mark.parametrize(
    ("body", "got"),
    [
        (b"[]", "array"),
        (b"[{}]", "array"),
        (b"42", "int"),
        (b'"text"', "str"),
        (b"null", "null"),
        (b"true", "bool"),
        (b"1.5", "float"),
    ],
)
def test_top_level_must_be_an_object(body: bytes, got: str) -> None:
    err = reject(body)
    assert err.reason.startswith("not a WhatsApp notification")
    assert f"got `{got}`" in err.reason


@pytest.mark.parametrize("obj", [b'"page"', b'"instagram"', b'""', b'"WHATSAPP_BUSINESS_ACCOUNT"'])
def test_wrong_object(obj: bytes) -> None:
    err = reject(b'{"object":' + obj + b',"entry":[]}')
    assert "expected 'whatsapp_business_account'" in err.reason


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"entry":[]}', "`object`"),
        (b'{"object":"whatsapp_business_account"}', "`entry`"),
        (b'{"object":"whatsapp_business_account","entry":{}}', "$.entry"),
        (b'{"object":7,"entry":[]}', "$.object"),
    ],
)
def test_envelope_shape(body: bytes, says: str) -> None:
    err = reject(body)
    assert err.reason.startswith("not a WhatsApp notification")
    assert says in err.reason


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"object":"whatsapp_business_account","entry":['
        + b"[" * 100_000
        + b"]" * 100_000
        + b"]}",
        b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",'
        b'"value":{"messages":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}}]}]}",
        b'{"x":"\\ud800","y":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_deep_nesting_is_a_decode_error(body: bytes) -> None:
    err = reject(body)
    assert "nested too deeply" in err.reason or "Expected `object`" in err.reason


def test_decode_error_is_a_wahook_error_and_a_value_error() -> None:
    err = reject(b"")
    assert isinstance(err, WahookError)
    assert isinstance(err, ValueError)


def test_str_with_a_lone_surrogate_cannot_be_utf8() -> None:
    err = reject('{"object":"whatsapp_business_account","entry":[],"x":"\ud800"}')
    assert "lone surrogate" in err.reason
    assert err.position == 54


def test_not_bytes_at_all() -> None:
    with pytest.raises(TypeError, match="takes bytes or str"):
        decode(123)  # type: ignore[arg-type]


def test_broken_json_after_a_validation_error_is_still_invalid_json() -> None:
    # The typed pass stops at the bad metadata before it reaches the broken JSON; the
    # one-entry-at-a-time pass that follows must report the JSON error, not raise it.
    body = (
        b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":'
        b'"messages","value":{"metadata":"x"}}]} "oops"]}'
    )
    err = reject(body)
    assert err.reason.startswith("invalid JSON")
    assert err.position is not None
