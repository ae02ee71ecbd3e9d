"""DIGEST 4.3 in DuckDB SQL: the same rules as reference.py, on the whole day at once."""

from __future__ import annotations

from ...core.sql import sql_literal
from .spec import COUNTRY_CODES, EMAIL_PATTERN, PHONE_PATTERN


def email_sql(col: str) -> str:
    email = f"lower(regexp_replace({col}, '\\s+', '', 'g'))"
    return f"CASE WHEN regexp_full_match({email}, {sql_literal(EMAIL_PATTERN)}) THEN {email} END"


def _code(country: str) -> str:
    cases = " ".join(f"WHEN {sql_literal(k)} THEN {sql_literal(v)}" for k, v in COUNTRY_CODES.items())
    return f"(CASE upper({country}) {cases} END)"


def phone_sql(col: str, country: str) -> str:
    digits = f"regexp_replace({col}, '[^0-9+]', '', 'g')"
    code = _code(country)
    intl = (f"(CASE WHEN starts_with({digits}, '+') THEN substr({digits}, 2) "
            f"WHEN starts_with({digits}, '00') THEN substr({digits}, 3) "
            f"WHEN starts_with({digits}, '0') AND {code} IS NOT NULL THEN {code} || substr({digits}, 2) "
            f"ELSE {digits} END)")
    no_trunk = (f"(CASE WHEN {code} IS NOT NULL AND starts_with({intl}, {code} || '0') "
                f"THEN {code} || substr({intl}, length({code}) + 2) ELSE {intl} END)")
    return f"CASE WHEN regexp_full_match({no_trunk}, {sql_literal(PHONE_PATTERN)}) THEN {no_trunk} END"


def sha256_upper_sql(expr: str) -> str:
    return f"upper(sha256({expr}))"
