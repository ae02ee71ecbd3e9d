"""digitalAudience CRM onboarding and updates, as `digitalaudience-dmp-integration.txt` and the
dA docs pages digested in DIGEST section 4 state them (decisions 4.5 #1–#5 cited below).

Normalisation and hashing run in DuckDB SQL (`normalise.py`); `reference.py` is the same rules in
plain Python, used by the known-answer tests.
"""

from __future__ import annotations

import pandera.pandas as pa

from ...validation import sql_checks  # noqa: F401  (registers the hash, uuid and PII checks)

# 4.2 update-file headers (4.5 #4: the `_sha256` names for automated updates); 4.5 #3: raw
# address parts, no `address_sha256`; `custom` is our CRM id so the match export can name it.
COLUMNS = ("email_sha256", "phone_sha256", "postal code", "house number", "extension", "aaid", "idfa", "custom")
LINE_END = "\r\n"  # 4.1: CRLF
COUNTRY_CODES = {"NL": "31", "SE": "46", "DE": "49", "BE": "32", "FI": "358", "DK": "45", "NO": "47"}
PHONE_PATTERN = r"^[1-9]\d{7,14}$"  # 4.3: international digits, no '+'
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class CrmRecords(pa.DataFrameModel):
    """One row per CRM contact: hashed email and phone, raw address parts, ad IDs, our CRM id."""

    email_sha256: str = pa.Field(nullable=True, is_hex_digest={"length": 64, "case": "upper"},
                                 description="SHA-256 of the lower-cased email without spaces, upper-case hex (4.3, 4.5 #2)")
    phone_sha256: str = pa.Field(nullable=True, is_hex_digest={"length": 64, "case": "upper"},
                                 description="SHA-256 of the international number without '+', spaces or trunk 0 (4.3, 4.5 #1)")
    # the raw address parts are free text in a CSV: no leading = + - @ (a spreadsheet formula);
    # the hashes and UUIDs cannot carry one
    postal_code: str = pa.Field(nullable=True, alias="postal code", not_email_or_phone=(), no_formula_prefix=(),
                                description="raw postal code: dA formats addresses itself (4.3)")
    house_number: str = pa.Field(nullable=True, alias="house number", not_email_or_phone=(), no_formula_prefix=())
    extension: str = pa.Field(nullable=True, not_email_or_phone=(), no_formula_prefix=())
    aaid: str = pa.Field(nullable=True, is_uuid=(), description="Google advertising id, lower case")
    idfa: str = pa.Field(nullable=True, is_uuid=(), description="Apple advertising id, upper case")
    custom: str = pa.Field(unique=True, str_matches=r"^\S+$", not_email_or_phone=(), no_formula_prefix=(),
                           description="our CRM record id (the match export returns it)")

    class Config:
        strict = True
        ordered = True
        # 4.1: at least one identifier column per row
        at_least_one_present = {"columns": ["email_sha256", "phone_sha256", "postal code", "aaid", "idfa"]}
        # 4.2: postal code is mandatory when a raw address is given
        required_together = {"when_any": ["house number", "extension"], "require": "postal code"}


class MatchExport(pa.DataFrameModel):
    """A row of the nightly match export: a DMP cookie id matched to one of our CRM records
    ("Daily DA match export": delta files of the cookies seen in the past 24 hours)."""

    cookie_id: str = pa.Field(str_matches=r"^[A-Za-z0-9._:-]{1,128}$", description="the DMP cookie id")
    crm_id: str = pa.Field(str_matches=r"^\S{1,64}$", description="our CRM record id (`custom` in the files we sent)")
    matched_at: str = pa.Field(nullable=True, str_matches=r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?$")

    class Config:
        strict = True
        ordered = True
        unique = ["cookie_id", "crm_id"]
