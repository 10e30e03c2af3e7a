"""The protocol's signing and Bearer rules (values from the protocol notes)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from inngest_like import ConfigError, Inngest, signing


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


# -- issue 10.2: the Bearer bypass ----------------------------------------------------------

@pytest.mark.parametrize("token", ["signkey-prod-", "", "   ", "signkey-test-", "-", "zz",
                                   "signkey-prod-my-long-password", "my-long-password"])
def test_empty_or_malformed_tokens_never_match(token: str) -> None:
    # the reported bypass: a key that is not hex after its prefix, and an empty token
    assert not signing.bearer_matches(token, ["signkey-prod-my-long-password"])
    assert not signing.bearer_matches(token, ["signkey-prod-" + "ab" * 32])
    assert not signing.bearer_matches(token, ["signkey-prod-", ""])


def test_keys_with_nothing_after_the_prefix_match_nothing() -> None:
    empty_hash = hashlib.sha256(b"").hexdigest()
    assert not signing.bearer_matches(empty_hash, ["signkey-prod-"])
    body = b'{"a":1}'
    forged = signing.sign(body, "signkey-prod-", now_s=100)  # an HMAC under an empty key
    with pytest.raises(signing.SignatureError):
        signing.verify(body, forged, ["signkey-prod-"], now_s=100)


@pytest.mark.parametrize(("key", "words"), [
    ("signkey-prod-my-long-password", "signkey-<env>-<hex>"),
    ("my-long-password", "signkey-<env>-<hex>"),
    ("signkey-prod-", "0 hex characters"),
    ("signkey-prod-abc123", "at least 32"),
    ("signkey-prod-" + "a" * 33, "even number"),
    ("prod-" + "ab" * 32, "signkey-<env>-<hex>"),
])
def test_key_problems_are_named_without_quoting_the_key(key: str, words: str) -> None:
    problem = signing.key_problem(key)
    assert problem is not None and words in problem
    assert "password" not in problem and "aaaa" not in problem and "abab" not in problem


def test_the_sdk_client_refuses_a_malformed_key_at_start() -> None:
    with pytest.raises(ConfigError, match=r"signing_key \(INNGEST_SIGNING_KEY\) must look"):
        Inngest(app_id="app", is_production=True, signing_key="signkey-prod-my-long-password")
    with pytest.raises(ConfigError, match=r"signing_key_fallback .* at least 32"):
        Inngest(app_id="app", is_production=True, signing_key="signkey-prod-" + "ab" * 32,
                signing_key_fallback="signkey-prod-abcd")


def test_good_keys_have_no_problem() -> None:
    for key in ("signkey-prod-" + "ab" * 32, "signkey-branch-" + "0F" * 16, " signkey-test-"
                + "12" * 16 + "\n"):
        assert signing.key_problem(key) is None, key
