"""The protocol's signing and Bearer rules (values from the protocol notes)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from inngest_like import signing


def test_bearer_is_sha256_of_hex_decoded_key() -> None:
    assert signing.bearer("signkey-prod-123abc") == (
        "94bab7f22b92278ccab46e15da43a9fb8b079c05fa099d4134c6c39bbcee49f6")


def test_sign_uses_key_text_without_prefix_and_seconds() -> None:
    header = signing.sign(b'{"a":1}', "signkey-test-abcd", now_s=1700000000)
    mac = hmac.new(b"abcd", b'{"a":1}1700000000', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000&s={mac}"


def test_verify_canonicalises_and_accepts_fallback() -> None:
    body = b'{"b": 2, "a": 1}'
    header = signing.sign(signing.canonical(body), "signkey-test-bbbb", now_s=100)
    signing.verify(body, header, ["signkey-test-aaaa", "signkey-test-bbbb"], now_s=100)
    with pytest.raises(signing.SignatureError, match="too old"):
        signing.verify(body, header, ["signkey-test-bbbb"], now_s=100 + 301)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(b'{"a": 2, "b": 2}', header, ["signkey-test-bbbb"], now_s=100)
    with pytest.raises(signing.SignatureError) as missing:
        signing.verify(body, None, ["signkey-test-bbbb"])
    assert missing.value.code == "header_missing"


def test_bearer_matches_hash_or_plain_key_with_or_without_prefix() -> None:
    keys = ["signkey-prod-123abc"]
    hashed = signing.bearer(keys[0])
    for token in (hashed, f"signkey-prod-{hashed}", "123abc", "signkey-prod-123abc"):
        assert signing.bearer_matches(token, keys), token
    assert not signing.bearer_matches("deadbeef", keys)
