"""The voice webhooks' token check (webhooks.signatures.verify_token), without PyJWT's decode.

Known answers: tokens made by PyJWT and shaped exactly as Vonage sends them (header
``{"alg": "HS256", "typ": "JWT"}``; claims iat, jti, iss, api_key, application_id,
payload_hash) pass, and our verdict on the signature agrees with the Vonage SDK's own
verifier (``vonage_jwt.verify_signature``). The SDK's signer makes RS256 application
tokens only, so it cannot make these; its verifier is the reference. Then tampering:
every part of a good token changed in every way we could think of is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import jwt
import pytest
from vonage_jwt import verify_signature
from vonage_jwt.errors import VonageVerifyJwtError

from webhooks.signatures import SignatureError, sign_voice_webhook, verify_token

# Known-answer tests sign with short secrets on purpose (Vonage's are 32+ bytes).
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

SECRET = "s3cret-signature-key-of-enough-length"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
BODY = b'{"status": "answered", "uuid": "63f61863-4a51-4f6b-86e1-46edebcf9356"}'
APP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

# Made once with PyJWT 2.15 (jwt.encode(VECTOR_CLAIMS, SECRET, "HS256", headers={"typ": "JWT"})) and
# kept as text: a known answer that does not depend on the library still being here.
VECTOR_CLAIMS = {
    "iat": NOW,
    "jti": "0f0a8a44-2b2e-4a5c-9a55-8f3b1f3f6c11",
    "iss": "Vonage",
    "api_key": "abcd1234",
    "application_id": APP,
    "payload_hash": hashlib.sha256(BODY).hexdigest(),
}
VECTOR = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3NjcyMjU2MDAsImp0aSI6IjBmMGE4YTQ0LTJiMmUtNGE1Yy05YTU"
    "1LThmM2IxZjNmNmMxMSIsImlzcyI6IlZvbmFnZSIsImFwaV9rZXkiOiJhYmNkMTIzNCIsImFwcGxpY2F0aW9uX2lkIjoiYWFhYWF"
    "hYWEtYmJiYi1jY2NjLWRkZGQtZWVlZWVlZWVlZWVlIiwicGF5bG9hZF9oYXNoIjoiZWZlMjY3MjEyMjNkMjFjMDg4ZGNlYTIwYjV"
    "iODQ4MTYzMzFkYjRiMTBiMmJkOTAwNWRlNGYwZTMzYTY5Y2U3NCJ9.81k0HcxdH_hsuR1fXv-JIRwiBAmUkTFH5f29TCUMS9k"
)


def vonage_token(body: bytes = BODY, *, iat: int = NOW, **extra: object) -> str:
    """A token as Vonage signs a voice webhook."""
    claims: dict[str, object] = {
        "iat": iat,
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "api_key": "abcd1234",
        "application_id": APP,
    }
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    claims.update(extra)
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"typ": "JWT"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: object, claims: object, *, secret: str = SECRET, raw: bool = False) -> str:
    """A token assembled by hand: any header, any claims text, signed HS256 with ``secret``."""
    head = b64(json.dumps(header).encode())
    body = b64(claims if raw else json.dumps(claims).encode())  # type: ignore[arg-type]
    signing_input = f"{head}.{body}".encode()
    signature = b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return f"{head}.{body}.{signature}"


def check(token: str, body: bytes = BODY, *, now: float = NOW, application_id: str = "") -> dict:
    return verify_token(token=token, body=body, secret=SECRET, now=now, application_id=application_id)


# --- known answers ------------------------------------------------------------------------------


def test_the_kept_vector_verifies_and_pyjwt_still_makes_it():
    assert check(VECTOR, application_id=APP) == VECTOR_CLAIMS
    assert jwt.encode(VECTOR_CLAIMS, SECRET, algorithm="HS256", headers={"typ": "JWT"}) == VECTOR
    assert verify_signature(VECTOR, SECRET) is True


def test_a_vonage_shaped_token_made_by_pyjwt_verifies_and_the_sdk_agrees():
    token = vonage_token()
    assert check(token, application_id=APP)["payload_hash"] == hashlib.sha256(BODY).hexdigest()
    assert verify_signature(token, SECRET) is True


def test_our_own_signer_makes_tokens_the_sdk_verifies():
    token = sign_voice_webhook(body=BODY, secret=SECRET, iat=NOW)
    assert verify_signature(token, SECRET) is True
    assert check(token)["iss"] == "Vonage"


@pytest.mark.parametrize("secret", [SECRET, "x", "é-unicode-secret", "a" * 200])
def test_signature_verdicts_agree_with_the_sdk(secret):
    good = jwt.encode({"iat": NOW}, secret, algorithm="HS256")
    bad = jwt.encode({"iat": NOW}, secret + "!", algorithm="HS256")
    assert verify_signature(good, secret) is True
    assert verify_signature(bad, secret) is False
    assert verify_token(token=good, body=b"", secret=secret, now=NOW)["iat"] == NOW
    with pytest.raises(SignatureError):
        verify_token(token=bad, body=b"", secret=secret, now=NOW)


def test_a_get_token_has_no_payload_hash_and_passes_with_no_body():
    token = vonage_token(b"")
    assert check(token, b"")["iat"] == NOW


def test_a_float_iat_within_the_window_passes():
    assert check(vonage_token(iat=NOW - 10.5))["iat"] == NOW - 10.5  # type: ignore[arg-type]


# --- the body, the window and the application ------------------------------------------------------


def test_a_body_needs_a_payload_hash():
    """A GET-signed token replayed with an invented body is refused."""
    with pytest.raises(SignatureError, match="payload_hash"):
        check(vonage_token(b""), BODY)


def test_a_body_that_does_not_match_is_refused():
    with pytest.raises(SignatureError):
        check(vonage_token(BODY), BODY + b" ")


def test_an_upper_case_payload_hash_matches():
    token = vonage_token(payload_hash=hashlib.sha256(BODY).hexdigest().upper())
    assert check(token)


@pytest.mark.parametrize("skew", [-301, 301, -(10**6)])
def test_iat_outside_five_minutes_is_refused(skew):
    with pytest.raises(SignatureError):
        check(vonage_token(iat=NOW + skew))


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_iat_at_the_window_edges_passes(skew):
    assert check(vonage_token(iat=NOW + skew))


def test_another_application_is_refused_when_ours_is_configured():
    with pytest.raises(SignatureError, match="application"):
        check(vonage_token(application_id="ffffffff-0000-0000-0000-000000000000"), application_id=APP)


def test_a_token_without_application_id_is_refused_when_ours_is_configured():
    token = jwt.encode({"iat": NOW}, SECRET, algorithm="HS256")
    with pytest.raises(SignatureError, match="application"):
        check(token, b"", application_id=APP)


def test_any_application_passes_when_none_is_configured():
    assert check(vonage_token(application_id="any"))


# --- tampering -------------------------------------------------------------------------------------


def _parts(token: str) -> list[str]:
    return token.split(".")


def _flip(segment: str, index: int = 5) -> str:
    char = segment[index]
    return segment[:index] + ("A" if char != "A" else "B") + segment[index + 1 :]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_changed_character_in_any_part_is_refused(which):
    parts = _parts(vonage_token())
    parts[which] = _flip(parts[which])
    with pytest.raises(SignatureError):
        check(".".join(parts))


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "typ": "JWT"},
        {"alg": "None"},
        {"alg": "HS512"},
        {"alg": "HS384"},
        {"alg": "RS256"},
        {"alg": "hs256"},
        {"alg": ["HS256"]},
        {"typ": "JWT"},
        {"alg": "HS256", "crit": ["exp"]},
        ["HS256"],
        "HS256",
    ],
    ids=repr,
)
def test_any_header_but_hs256_is_refused_even_when_signed_with_our_secret(header):
    with pytest.raises(SignatureError):
        check(hand_made(header, {"iat": NOW}), b"")


def test_alg_none_with_an_empty_signature_is_refused():
    token = jwt.encode({"iat": NOW}, key=None, algorithm="none")
    assert token.endswith(".")
    with pytest.raises(SignatureError):
        check(token, b"")


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_a_token_signed_with_another_hmac_is_refused(alg):
    with pytest.raises(SignatureError):
        check(jwt.encode({"iat": NOW}, SECRET, algorithm=alg), b"")


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t + "=",
        lambda t: t.replace(".", "=.", 1),
        lambda t: t.replace(".", "==.", 1),
        lambda t: " " + t,
        lambda t: t + " ",
        lambda t: t.replace(".", " .", 1),
        lambda t: t.replace(".", ".\n", 1),
        lambda t: t[:10] + "\t" + t[10:],
        lambda t: t + ".",
        lambda t: t + ".abc",
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t.rsplit(".", 1)[0] + ".",
        lambda t: t.replace("-", "+").replace("_", "/") + ("" if "-" in t or "_" in t else "+"),
        lambda t: t[:-1],
        lambda t: t + "A",
        lambda t: t[:-1] + chr(ord(t[-1]) ^ 1),
        lambda t: t.replace("e", "é", 1),
        lambda t: t + "." * 5000,
        lambda t: "",
        lambda t: "..",
    ],
    ids=[
        "pad end",
        "pad header",
        "pad header twice",
        "leading space",
        "trailing space",
        "space before dot",
        "newline after dot",
        "tab inside",
        "four parts empty",
        "four parts",
        "two parts",
        "empty signature",
        "base64 not url-safe",
        "signature one short",
        "signature one long",
        "last signature bit",
        "non-ascii",
        "huge",
        "empty",
        "dots only",
    ],
)
def test_padding_whitespace_and_shape_changes_are_refused(change):
    with pytest.raises(SignatureError):
        check(change(vonage_token()))


@pytest.mark.parametrize(
    "iat",
    [10**400, -(10**400), "1767225600", None, [NOW], {"t": NOW}, True, False, 1e309],
    ids=["huge", "huge negative", "string", "null", "list", "object", "true", "false", "float overflow"],
)
def test_odd_iat_values_signed_with_our_secret_are_refused(iat):
    with pytest.raises(SignatureError):
        check(hand_made({"alg": "HS256", "typ": "JWT"}, {"iat": iat}), b"")


@pytest.mark.parametrize(
    "claims_text",
    [
        b'{"iat": NaN}',
        b'{"iat": Infinity}',
        b'{"iat": -Infinity}',
        b'{"iat": 1e400}',
        b'{"iat": ' + b"9" * 5000 + b"}",
        b"[1767225600]",
        b"not json",
        b"\xff\xfe",
        b'{"iat": 1767225600, "iat": "x"}',
        b"[" * 3000 + b"]" * 3000,
    ],
    ids=["nan", "infinity", "-infinity", "1e400", "5000 digits", "array", "not json", "not utf-8", "dup", "deep"],
)
def test_claims_that_are_not_a_plain_json_object_with_an_iat_are_refused(claims_text):
    with pytest.raises(SignatureError):
        check(hand_made({"alg": "HS256", "typ": "JWT"}, claims_text, raw=True), b"")


def test_no_iat_is_refused():
    with pytest.raises(SignatureError):
        check(jwt.encode({"jti": "x"}, SECRET, algorithm="HS256"), b"")


def test_an_expired_token_is_refused_as_pyjwt_did():
    with pytest.raises(SignatureError):
        check(vonage_token(exp=NOW - 1))


def test_a_token_not_yet_valid_is_refused_as_pyjwt_did():
    with pytest.raises(SignatureError):
        check(vonage_token(nbf=NOW + 60))


def test_a_token_with_an_audience_is_refused_as_pyjwt_did():
    with pytest.raises(SignatureError):
        check(vonage_token(aud="someone-else"))


@pytest.mark.parametrize("payload_hash", [5, None, ["x"], "é", "", "0" * 64])
def test_odd_payload_hashes_are_refused(payload_hash):
    with pytest.raises(SignatureError):
        check(vonage_token(payload_hash=payload_hash))


def test_pyjwt_and_the_sdk_refuse_what_we_refuse_for_a_wrong_signature():
    """A sanity check of the reference: the SDK says False where we raise."""
    token = vonage_token()
    head, claims, _ = token.split(".")
    forged = f"{head}.{claims}.{b64(b'0' * 32)}"
    assert verify_signature(forged, SECRET) is False
    with pytest.raises(SignatureError):
        check(forged)
    with pytest.raises(VonageVerifyJwtError):
        verify_signature("not-a-token", SECRET)
    with pytest.raises(SignatureError):
        check("not-a-token")
