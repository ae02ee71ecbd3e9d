"""The normalisation rules of DIGEST 4.3 in plain Python: the reference the SQL is tested against."""

from __future__ import annotations

import hashlib
import re

from .spec import COUNTRY_CODES, EMAIL_PATTERN, PHONE_PATTERN


def normal_email(raw: str | None) -> str | None:
    """Lower case, every space removed; None unless it then looks like an email."""
    if raw is None:
        return None
    email = re.sub(r"\s+", "", raw).lower()
    return email if re.fullmatch(EMAIL_PATTERN, email) else None


def normal_phone(raw: str | None, country: str | None) -> str | None:
    """International digits without '+': drop + / - ( ) and spaces, turn 00 and national trunk 0
    into the country code, and drop a trunk 0 written after the country code."""
    if raw is None:
        return None
    digits = re.sub(r"[^0-9+]", "", raw)
    code = COUNTRY_CODES.get((country or "").upper())
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    elif digits.startswith("0") and code:
        digits = code + digits[1:]
    if code and digits.startswith(code + "0"):
        digits = code + digits[len(code) + 1:]
    return digits if re.fullmatch(PHONE_PATTERN, digits) else None


def sha256_upper(text: str | None) -> str | None:
    return hashlib.sha256(text.encode("utf-8")).hexdigest().upper() if text is not None else None
