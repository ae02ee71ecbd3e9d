"""The source tables of the embedded warehouse: names, columns and what each column holds.

This is the one statement of the warehouse's shape. The seed generator creates exactly these
columns (a test compares them), and the Dagster source assets show them as column schemas.
The data is deliberately messy where real sources are: turning it into each vendor's exact
format is the platform's job.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB type
    description: str


@dataclass(frozen=True)
class SourceTable:
    name: str  # which vendors read it, the asset graph shows (its downstream assets)
    description: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


C = Column

TABLES: tuple[SourceTable, ...] = (
    SourceTable(
        "ispot_conversion_events",
        "Web and app conversion events as the tracking pipeline lands them: IPv4 and IPv6 client "
        "addresses, raw user agents, mixed-case platform and event names, late arrivals.",
        (
            C("event_id", "BIGINT", "unique event id"),
            C("client_ip", "VARCHAR", "client address as captured: IPv4 or IPv6 (about 4% IPv6)"),
            C("event_ts", "TIMESTAMP", "when the event happened, UTC"),
            C("loaded_at", "TIMESTAMP", "when the row reached the warehouse, UTC (about 2% arrive 1-3 days late)"),
            C("site_id", "VARCHAR", "iSpot tracking code TC-<account>-<site>, sometimes padded with spaces"),
            C("platform", "VARCHAR", "'web' or 'app' in inconsistent case"),
            C("event_type", "VARCHAR", "event name, inconsistent case (purchase, signup, add_to_cart)"),
            C("custom_data", "VARCHAR", "comma-joined tokens for iSpot customdata, often NULL"),
            C("user_agent", "VARCHAR", "raw user agent string"),
            C("order_id", "VARCHAR", "order reference for purchases"),
            C("amount", "DECIMAL(12,2)", "order amount for purchases"),
        ),
    ),
    SourceTable(
        "lotame_users",
        "Audience profiles: one row per user id with its id type as the collector wrote it "
        "(mixed case, a few unsupported types), consent, last seen IP (IPv4 or IPv6) and country.",
        (
            C("userid", "VARCHAR", "user id: device ids are UUIDs, others alphanumeric"),
            C("idtype", "VARCHAR", "id type as collected, mixed case (IDFA, gaid, PANO, ...); about 1% unsupported"),
            C("consent", "BOOLEAN", "explicit consent flag; NULL when only a TCF string was collected"),
            C("tcfconsent", "VARCHAR", "IAB TCF consent string when collected"),
            C("country", "VARCHAR", "ISO 3166-1 alpha-2 country, sometimes lower case"),
            C("last_ip", "VARCHAR", "last seen client IP, IPv4 or IPv6"),
            C("last_ip_seen_at", "TIMESTAMP", "when last_ip was seen, UTC"),
        ),
    ),
    SourceTable(
        "lotame_segment_memberships",
        "Which user is in which audience segment, as validity intervals: a membership is live "
        "on day D when valid_from <= D and (valid_to is NULL or D < valid_to).",
        (
            C("userid", "VARCHAR", "user id (lotame_users.userid)"),
            C("segment", "VARCHAR", "segment name"),
            C("valid_from", "DATE", "first day the user is in the segment"),
            C("valid_to", "DATE", "first day the user is no longer in the segment; NULL while live"),
            C("last_seen_at", "TIMESTAMP", "most recent behaviour for this segment (recency), UTC"),
        ),
    ),
    SourceTable(
        "optimove_customers",
        "Customer master data with a LastUpdated-style change timestamp; birth dates use the "
        "1900-01-01 sentinel for unknown, as legacy CRMs do.",
        (
            C("customer_id", "VARCHAR", "customer id shared by every Optimove table"),
            C("email", "VARCHAR", "email as entered"),
            C("first_name", "VARCHAR", "first name (non-ASCII names included)"),
            C("last_name", "VARCHAR", "last name"),
            C("country", "VARCHAR", "ISO country code"),
            C("registration_date", "DATE", "account creation day"),
            C("birth_date", "DATE", "birth date; 1900-01-01 when unknown (a sentinel)"),
            C("opt_in_email", "BOOLEAN", "email marketing opt-in"),
            C("last_updated", "TIMESTAMP", "last change of the row, UTC"),
        ),
    ),
    SourceTable(
        "optimove_transactions",
        "Orders with amounts, currency and a change timestamp; about 3% are updated again "
        "days later (refunds), which incremental extraction must pick up.",
        (
            C("transaction_id", "VARCHAR", "primary key"),
            C("customer_id", "VARCHAR", "optimove_customers.customer_id"),
            C("transaction_ts", "TIMESTAMP", "order time, UTC"),
            C("amount", "DECIMAL(12,2)", "order amount, always positive"),
            C("currency", "VARCHAR", "ISO 4217 currency"),
            C("product_id", "VARCHAR", "product reference"),
            C("status", "VARCHAR", "completed or refunded"),
            C("last_updated", "TIMESTAMP", "last change of the row, UTC"),
        ),
    ),
    SourceTable(
        "crm_contacts",
        "CRM contacts as typed by people: emails with capitals and spaces, phones with +, "
        "spaces, dashes, brackets and national trunk zeros, raw postal addresses, advertising ids, "
        "and opt-in / opt-out times.",
        (
            C("contact_id", "VARCHAR", "CRM record id"),
            C("email_raw", "VARCHAR", "email as entered (mixed case, stray spaces), sometimes NULL"),
            C("phone_raw", "VARCHAR", "phone as entered (+31 6 ..., 06-..., 0046 ...), sometimes NULL"),
            C("country", "VARCHAR", "ISO country of the contact (NL, SE, DE, BE)"),
            C("postal_code", "VARCHAR", "postal code as entered"),
            C("house_number", "VARCHAR", "house number"),
            C("house_number_ext", "VARCHAR", "house number extension (A, bis, ...)"),
            C("aaid", "VARCHAR", "Google advertising id (UUID), sometimes upper case"),
            C("idfa", "VARCHAR", "Apple advertising id (UUID)"),
            C("created_at", "TIMESTAMP", "when the contact was created, UTC"),
            C("opted_in_at", "TIMESTAMP", "when the contact opted in to data sharing, UTC"),
            C("opted_out_at", "TIMESTAMP", "when the contact opted out again, UTC; NULL if never"),
        ),
    ),
    SourceTable(
        "idomoo_recipients",
        "Who gets a personalised video on which day, with the storyboard's personalisation "
        "fields; names include characters outside Windows-1252.",
        (
            C("recipient_id", "VARCHAR", "recipient key, unique per send day"),
            C("send_date", "DATE", "the day the batch is sent"),
            C("first_name", "VARCHAR", "first name (UTF-8, non-ASCII)"),
            C("last_name", "VARCHAR", "last name"),
            C("email", "VARCHAR", "email address"),
            C("language", "VARCHAR", "language code"),
            C("offer_code", "VARCHAR", "personalised offer"),
            C("city", "VARCHAR", "city"),
            C("points_balance", "INTEGER", "loyalty points to show in the video"),
        ),
    ),
)

BY_NAME = {t.name: t for t in TABLES}


@dataclass(frozen=True)
class LoadMark:
    """How to tell that the warehouse has loaded a day of a table. `day_rows` is the SQL
    condition for the rows that belong to the day ({start} and {end} are the day's bounds);
    `loaded_through` (an aggregate over the table) is the time up to which loads are known to
    be complete. A day without rows is only *empty* once `loaded_through` has passed its end;
    before that it is *not loaded yet*."""

    day_rows: str
    loaded_through: str
    # partitions are data days that must have ended, except plans for a day (a send date), which
    # may go out on the day itself
    open_day: bool = False


def _in_day(column: str) -> str:
    return f"{column} >= {{start}} AND {column} < {{end}}"


LOAD_MARKS: dict[str, LoadMark] = {
    "ispot_conversion_events": LoadMark(_in_day("event_ts"), "max(loaded_at)"),
    # a state table: the day's rows are the memberships live at its end
    "lotame_segment_memberships": LoadMark("valid_from < {end} AND (valid_to IS NULL OR valid_to >= {end})",
                                           "max(last_seen_at)"),
    # customers are a dimension (sent whole): the day's rows are those that existed by its end
    "optimove_customers": LoadMark("last_updated < {end}", "max(last_updated)"),
    "optimove_transactions": LoadMark(_in_day("last_updated"), "max(last_updated)"),
    "crm_contacts": LoadMark(f"({_in_day('created_at')}) OR ({_in_day('opted_in_at')}) OR ({_in_day('opted_out_at')})",
                             "max(greatest(created_at, coalesce(opted_in_at, created_at), "
                             "coalesce(opted_out_at, created_at)))"),
    # recipients are planned ahead: a send day is loaded once the table reaches it
    "idomoo_recipients": LoadMark(_in_day("send_date"), "max(send_date)::TIMESTAMP + INTERVAL 1 DAY", open_day=True),
}

# the column giving each row's data day (or send date), where a table has one: the warehouse's first
# day is the earliest of them (partitions.py)
DAY_COLUMNS: dict[str, str] = {"ispot_conversion_events": "event_ts", "optimove_transactions": "transaction_ts",
                               "idomoo_recipients": "send_date"}
