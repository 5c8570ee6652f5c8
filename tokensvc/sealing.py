"""Tenants' webhook secrets sealed at rest (no Flask): AES-256-GCM under a key of
TENANT_WEBHOOK_SECRETS_KEY, the endpoint's id bound to it as associated data, so a sealed secret
copied onto another endpoint does not open.

Several keys may be given: the first seals, any opens (a sealed secret names its key by a short
fingerprint), so a new key goes first and the old one stays until `flask webhooks rekey` has
sealed every secret again with the new one. A secret stored in clear (before a key was set, or
in DEV_MODE without one) still opens as itself, and the rekey seals it.
"""

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: What a sealed secret starts with: the format's version.
SEALED_PREFIX = "whenc1."
#: A key's length in bytes (AES-256).
KEY_BYTES = 32
NONCE_BYTES = 12


class SealingError(ValueError):
    """A key that cannot be used, or a sealed secret no key given opens; the message names no
    secret."""


def parse_keys(text: str) -> tuple[bytes, ...]:
    """The keys of a TENANT_WEBHOOK_SECRETS_KEY value: 32 bytes each, in base64 (standard or
    URL-safe) or as 64 hex digits (what a PaaS's secret generator makes), separated by commas
    or whitespace; SealingError says what is wrong."""
    keys = []
    for number, word in enumerate(text.replace(",", " ").split(), start=1):
        if len(word) == 2 * KEY_BYTES and all(c in "0123456789abcdefABCDEF" for c in word):
            keys.append(bytes.fromhex(word))
            continue
        try:
            key = base64.b64decode(
                word.replace("-", "+").replace("_", "/") + "=" * (-len(word) % 4), validate=True
            )
        except (binascii.Error, ValueError):
            raise SealingError(f"key {number} is not base64") from None
        if len(key) != KEY_BYTES:
            raise SealingError(f"key {number} is {len(key)} bytes, not {KEY_BYTES}")
        keys.append(key)
    return tuple(keys)


def new_key() -> str:
    """A fresh key, as TENANT_WEBHOOK_SECRETS_KEY takes it."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def _fingerprint(key: bytes) -> str:
    """A short name of a key (not a secret: 8 hex digits of its SHA-256)."""
    return hashlib.sha256(b"tokensvc-webhook-secrets:" + key).hexdigest()[:8]


class SecretBox:
    """Seals with the first key, opens with any; with no key, keeps secrets as they are (only
    DEV_MODE allows that)."""

    def __init__(self, keys: tuple[bytes, ...] = ()):
        """Use `keys` (the first seals)."""
        self.keys = keys
        self._ciphers = {_fingerprint(key): AESGCM(key) for key in keys}
        self._first = _fingerprint(keys[0]) if keys else None

    @property
    def sealing(self) -> bool:
        """Whether secrets are sealed (a key is given)."""
        return self._first is not None

    def seal(self, secret: str, endpoint_id: str) -> str:
        """`secret` sealed for `endpoint_id` with the first key ("" stays "")."""
        if not secret or self._first is None:
            return secret
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._first].encrypt(nonce, secret.encode(), endpoint_id.encode())
        text = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{SEALED_PREFIX}{self._first}.{text}"

    def open(self, stored: str, endpoint_id: str) -> str:
        """The secret a stored value holds (a value in clear is itself); SealingError when no
        key given opens it."""
        if not stored.startswith(SEALED_PREFIX):
            return stored
        fingerprint, _, text = stored[len(SEALED_PREFIX) :].partition(".")
        cipher = self._ciphers.get(fingerprint)
        if cipher is None:
            raise SealingError(
                f"a webhook secret is sealed with a key not in TENANT_WEBHOOK_SECRETS_KEY "
                f"(fingerprint {fingerprint})"
            )
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            return cipher.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], endpoint_id.encode()
            ).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise SealingError("a webhook secret does not open with its key") from None

    def current(self, stored: str) -> bool:
        """Whether a stored value is sealed with the first key already ("" counts)."""
        if not stored:
            return True
        return self._first is not None and stored.startswith(f"{SEALED_PREFIX}{self._first}.")
