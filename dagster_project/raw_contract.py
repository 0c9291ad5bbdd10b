"""The landing-folder contract: which files, which columns, how each value is read and checked.

Columns are matched by name (trimmed, case-insensitive), in any order. Every value lands as
text first; the rules below turn it into a typed value or a quarantine reason, in DuckDB SQL.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Kind = Literal["id", "text", "date", "timestamp", "amount", "score", "boolean", "rate", "number", "count"]

# ISO 8601 date, optionally followed by a time (and zone): 2024-05-01, 2024-05-01T10:15:00Z.
ISO_DATE_PATTERN = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?"
SCORE_MIN, SCORE_MAX = 0, 10
# A margin rate is a share of the revenue: a loss leader may be negative, nothing exceeds 100 %.
RATE_MIN, RATE_MAX = -1, 1


@dataclasses.dataclass(frozen=True)
class RawColumn:
    name: str
    kind: Kind
    required: bool = True
    # For text/id columns with a closed vocabulary: any other (trimmed, lower-case) value is quarantined.
    allowed: tuple[str, ...] = ()
    # Dates of plans (an offer's end_date) may lie after the day of the run.
    may_be_future: bool = False


@dataclasses.dataclass(frozen=True)
class RawSource:
    """One kind of landing file: ``<raw_dir>/<folder>/*.csv|*.parquet`` → ``raw.<table>``."""

    table: str
    folder: str
    key: str | None  # None: rows are events; only exact repeats are duplicates, nothing conflicts
    columns: tuple[RawColumn, ...]

    @property
    def quarantine_table(self) -> str:
        return f"quarantine_{self.folder}"

    @property
    def required_columns(self) -> list[str]:
        return [column.name for column in self.columns if column.required]

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]


TRANSACTIONS = RawSource(
    table="transactions",
    folder="transactions",
    key="transaction_id",
    columns=(
        RawColumn("transaction_id", "id"),
        RawColumn("customer_id", "id"),
        RawColumn("transaction_date", "date"),
        RawColumn("amount", "amount"),
        RawColumn("product_id", "text", required=False),
        RawColumn("channel", "text", required=False),
    ),
)

NPS_RESPONSES = RawSource(
    table="nps_responses",
    folder="nps",
    key="response_id",
    columns=(
        RawColumn("response_id", "id"),
        RawColumn("customer_id", "id"),
        RawColumn("response_date", "date"),
        RawColumn("score", "score"),
        RawColumn("survey", "text", required=False),
        RawColumn("comment", "text", required=False),
    ),
)

# Optional: marketing consent per customer. When this folder has files, the export leaves out
# customers without consent (never the analytics).
CUSTOMERS = RawSource(
    table="customers",
    folder="customers",
    key=None,  # consent changes over time: the latest consent_updated_at per customer wins
    columns=(
        RawColumn("customer_id", "id"),
        RawColumn("marketing_consent", "boolean"),
        RawColumn("consent_updated_at", "timestamp"),
        RawColumn("email", "text", required=False),
    ),
)

# Optional: right-to-erasure requests; the next run removes these customers everywhere.
ERASURES = RawSource(
    table="erasures",
    folder="erasures",
    key=None,
    columns=(
        RawColumn("customer_id", "id"),
        RawColumn("requested_at", "timestamp", required=False),
    ),
)

# Optional: margin rate per product (share of the revenue, 0.35 = 35 %). Transactions of a listed
# product count on that margin; every other transaction on the margin_rate setting (config.py).
PRODUCTS = RawSource(
    table="products",
    folder="products",
    key="product_id",  # one rate per product: the same id again with another rate conflicts
    columns=(
        RawColumn("product_id", "id"),
        RawColumn("margin_rate", "rate"),
    ),
)

# Optional: the offers of the next-best-offer decision (dagster_project/next_best_offer, README
# "Next best offer"). One row per offer in one channel: the same offer in two channels is two
# offer_ids of one offer_group (a customer gets at most one offer of a group). Lists
# (eligible_segments, eligible_stages) are separated by '|'; empty = all. Empty optional numbers
# take the defaults the README names (duration: the customer's segment duration; no cap).
OFFER_CHANNELS = ("email", "sms", "app", "call_centre", "till", "web")
OFFERS = RawSource(
    table="offers",
    folder="offers",
    key="offer_id",
    columns=(
        RawColumn("offer_id", "id"),
        RawColumn("offer_name", "text", required=False),
        RawColumn("channel", "id", allowed=OFFER_CHANNELS),
        RawColumn("offer_group", "id", required=False),
        RawColumn("start_date", "date", may_be_future=True),
        RawColumn("end_date", "date", may_be_future=True),
        RawColumn("expected_volume", "number"),
        RawColumn("unit_margin", "number"),
        RawColumn("duration_years", "number", required=False),
        RawColumn("contact_cost", "number", required=False),
        RawColumn("eligible_segments", "text", required=False),
        RawColumn("eligible_stages", "text", required=False),
        RawColumn("requires_consent", "boolean", required=False),
        RawColumn("max_per_customer", "count", required=False),
        RawColumn("cap_window_days", "count", required=False),
        RawColumn("cooldown_after_reject_days", "count", required=False),
        RawColumn("suppress_after_purchase_days", "count", required=False),
        RawColumn("volume_cap", "count", required=False),
        RawColumn("business_weight", "number", required=False),
        RawColumn("response_window_days", "count"),
        # A purchase "of the offer" (suppression, transaction-derived responses) is a purchase of
        # this product; without one, any purchase.
        RawColumn("product_id", "id", required=False),
    ),
)

# Optional: what marketing automation returns about the offers. held_out = a control-arm customer
# the offer was chosen for and not sent (the none rows of the export name it); complained = a
# complaint about a contact (suppresses every offer for detractor_followup_days).
OFFER_EVENT_TYPES = ("sent", "opened", "clicked", "rejected", "converted", "held_out", "complained")
OFFER_ARMS = ("ranked", "random", "control")
OFFER_EVENTS = RawSource(
    table="offer_events",
    folder="offer_events",
    key="event_id",
    columns=(
        RawColumn("event_id", "id"),
        RawColumn("customer_id", "id"),
        RawColumn("offer_id", "id"),
        RawColumn("channel", "id", required=False, allowed=OFFER_CHANNELS),
        RawColumn("event_type", "id", allowed=OFFER_EVENT_TYPES),
        RawColumn("event_at", "timestamp"),
        RawColumn("arm", "id", required=False, allowed=OFFER_ARMS),
    ),
)

RAW_SOURCES = (TRANSACTIONS, NPS_RESPONSES, CUSTOMERS, ERASURES, PRODUCTS, OFFERS, OFFER_EVENTS)

SQL_TYPES: dict[Kind, str] = {
    "id": "varchar",
    "text": "varchar",
    "date": "date",
    "timestamp": "timestamp",
    "boolean": "boolean",
    "amount": "decimal(18, 2)",
    "score": "integer",
    "rate": "decimal(9, 6)",
    "number": "decimal(18, 4)",
    "count": "integer",
}


def typed_expression(column: RawColumn, value: str | None = None) -> str:
    """SQL turning the landed text ``raw_<name>`` into the typed value, or NULL when unreadable.
    ``value``: an expression equal to ``nullif(trim(raw_<name>), '')`` (e.g. a column holding it,
    see trimmed_expression), used instead of trimming again."""
    value = value or f"nullif(trim(raw_{column.name}), '')"
    if column.kind in ("id", "text"):
        if column.allowed:
            return f"lower({value})"
        return value if column.kind == "id" else f"raw_{column.name}"
    if column.kind == "date":
        return f"case when regexp_full_match({value}, '{ISO_DATE_PATTERN}') then try_cast(left({value}, 10) as date) end"
    if column.kind == "timestamp":
        return f"case when regexp_full_match({value}, '{ISO_DATE_PATTERN}') then try_cast(replace(rtrim({value}, 'Z'), 'T', ' ') as timestamp) end"
    if column.kind == "boolean":
        return (
            f"case lower({value}) when 'true' then true when '1' then true when 'yes' then true when 'ja' then true"
            " when 'false' then false when '0' then false when 'no' then false when 'nej' then false end"
        )
    if column.kind == "amount":
        return amount_expression(value)
    if column.kind == "rate":
        return rate_expression(value)
    if column.kind == "number":
        return rate_expression(value, "decimal(18, 4)")
    # Scores and counts are whole numbers: '9.5' or 'nio' are unreadable, not rounded.
    return f"case when regexp_full_match({value}, '[+-]?\\d+') then try_cast({value} as integer) end"


# Amounts: '.' or ',' as decimal separator (per file, column decimal_separator of the landing
# batch); thousands may be grouped by the other of the two, a space, a no-break space (U+00A0)
# or a narrow no-break space (U+202F) — but only in groups of three, so "1,5" in a '.'-file is
# not silently read as 15. A leading U+2212 minus counts as '-'.
_GROUP = r"[ \x{00A0}\x{202F}]"
_DOT_AMOUNT = r"[+-]?(\d+|\d{1,3}((,|" + _GROUP + r")\d{3})+)(\.\d+)?"
_COMMA_AMOUNT = r"[+-]?(\d+|\d{1,3}((\.|" + _GROUP + r")\d{3})+)(,\d+)?"


# The plain forms nearly every row has ("-12.50" in a '.'-file, "-12,50" in a ','-file): a
# subset of the full patterns above, with the value the full conversion gives, read without
# its character replacements (half the cost of the conversion at 10M rows).
_PLAIN_DOT_AMOUNT = r"-?\d+(\.\d+)?"
_PLAIN_COMMA_AMOUNT = r"-?\d+(,\d+)?"


def amount_expression(value: str) -> str:
    text = f"replace({value}, '\u2212', '-')"
    ungrouped = f"regexp_replace({text}, '{_GROUP}', '', 'g')"
    return (
        "case"
        f" when decimal_separator <> ',' and regexp_full_match({value}, '{_PLAIN_DOT_AMOUNT}')"
        f" then try_cast({value} as decimal(18, 2))"
        f" when decimal_separator = ',' and regexp_full_match({value}, '{_PLAIN_COMMA_AMOUNT}')"
        f" then try_cast(replace({value}, ',', '.') as decimal(18, 2))"
        f" when decimal_separator = ',' and regexp_full_match({text}, '{_COMMA_AMOUNT}')"
        f" then try_cast(replace(replace({ungrouped}, '.', ''), ',', '.') as decimal(18, 2))"
        f" when decimal_separator <> ',' and regexp_full_match({text}, '{_DOT_AMOUNT}')"
        f" then try_cast(replace({ungrouped}, ',', '') as decimal(18, 2))"
        " end"
    )


# Rates: a plain decimal with the file's separator ("0.35", "0,35" in a ','-file), no grouping.
_DOT_RATE = r"[+-]?(\d+(\.\d*)?|\.\d+)"
_COMMA_RATE = r"[+-]?(\d+(,\d*)?|,\d+)"


def rate_expression(value: str, sql_type: str = "decimal(9, 6)") -> str:
    """A plain decimal (rates; the offers' numbers with ``sql_type`` decimal(18, 4))."""
    return (
        "case"
        f" when decimal_separator <> ',' and regexp_full_match({value}, '{_DOT_RATE}') then try_cast({value} as {sql_type})"
        f" when decimal_separator = ',' and regexp_full_match({value}, '{_COMMA_RATE}')"
        f" then try_cast(replace({value}, ',', '.') as {sql_type})"
        " end"
    )


# ---------------------------------------------------------------------------------------------
# The landing's shortcuts: the same values as the rules above, computed cheaply for the text
# nearly every row has. Each one is exact by construction, never an approximation.
# ---------------------------------------------------------------------------------------------


def trimmed_expression(column: RawColumn) -> str:
    """Exactly ``nullif(trim(raw_<name>), '')``, without the trim for an all-ASCII text that
    neither starts nor ends with a space (nearly every value): of the ASCII characters trim()
    removes only the space (the others it removes are Unicode spaces such as U+00A0; a test
    holds DuckDB to that), so it would return such a text as it is. Checking for ASCII
    (characters = bytes) costs a third of the trim."""
    raw = f"raw_{column.name}"
    return (
        f"case when length({raw}) = strlen({raw}) and not starts_with({raw}, ' ') and not ends_with({raw}, ' ')"
        f" then nullif({raw}, '') else nullif(trim({raw}), '') end"
    )


def rendering(column: RawColumn, typed: str, decimal_separator: str) -> str:
    """SQL: the text of the typed value ``typed`` as a file would write it (``decimal_separator``:
    SQL giving the file's separator): its cast to varchar, with ',' for '.' in an amount of a
    ','-file. Where a text is its typed value's rendering, the landing need not keep it."""
    text = f"cast({typed} as varchar)"
    if column.kind == "amount":
        return f"case when {decimal_separator} = ',' then replace({text}, '.', ',') else {text} end"
    return text


@dataclasses.dataclass(frozen=True)
class PlainForm:
    """A kind's plain form: ``candidate`` reads the trimmed text by a plain cast; where the text is
    exactly the candidate's rendering (``2024-05-01``, ``-12.50``, ``-12,50`` in a ','-file), the
    rule (typed_expression) gives exactly the candidate, so the rule's patterns need not run."""

    candidate: str
    exact: str  # SQL with {candidate}: the column holding the candidate


def plain_form(column: RawColumn, value: str, decimal_separator: str) -> PlainForm | None:
    """The plain form of ``column``'s kind for a file with ``decimal_separator``, reading the
    trimmed text ``value``; None for kinds without one (their rule runs on every row).

    Why each is exact: a date renders as YYYY-MM-DD (ten characters only for years 1–9999), which
    the ISO pattern accepts and whose first ten characters cast to the same date; a decimal(18, 2)
    renders as -?digits.dd, which the plain amount pattern accepts and casts to the same value (in
    a ','-file -?digits,dd, which the plain ','-pattern accepts and reads back by the same
    replace); an integer renders as -?digits, which the whole-number pattern accepts."""
    separator = "'" + decimal_separator.replace("'", "''") + "'"
    renders = rendering(column, "{candidate}", separator) + f" = {value}"
    if column.kind == "date":
        return PlainForm(f"try_cast({value} as date)", f"length({value}) = 10 and {renders}")
    if column.kind == "amount" and decimal_separator == ",":
        return PlainForm(f"try_cast(replace({value}, ',', '.') as decimal(18, 2))", renders)
    if column.kind == "amount":
        return PlainForm(f"try_cast({value} as decimal(18, 2))", renders)
    if column.kind in ("score", "count"):
        return PlainForm(f"try_cast({value} as integer)", renders)
    return None


@dataclasses.dataclass(frozen=True)
class DateLimits:
    """Plausible dates: none before the business started, none after the day of the run."""

    earliest: str  # ISO date
    latest: str  # ISO date


def violation_expressions(
    column: RawColumn, limits: DateLimits | None = None, value: str | None = None
) -> list[tuple[str, str]]:
    """(condition, reason) pairs for one column, checked in order; the first that holds wins.
    The typed value is the column ``<name>``; ``value`` as in typed_expression."""
    raw = value or f"nullif(trim(raw_{column.name}), '')"
    typed = column.name
    rules: list[tuple[str, str]] = []
    if column.required:
        rules.append((f"{raw} is null", f"missing {column.name}"))
    if column.kind in ("date", "timestamp"):
        rules.append((f"{raw} is not null and {typed} is null", f"{column.name} is not an ISO date (YYYY-MM-DD)"))
        if limits is not None and column.kind == "date":
            rules.append((f"{typed} < date '{limits.earliest}'", f"{column.name} is before the business start {limits.earliest}"))
            if not column.may_be_future:
                rules.append((f"{typed} > date '{limits.latest}'", f"{column.name} is in the future (after {limits.latest})"))
    elif column.kind == "boolean":
        rules.append((f"{raw} is not null and {typed} is null", f"{column.name} is not true/false"))
    elif column.kind == "amount":
        rules.append((f"{raw} is not null and {typed} is null", f"{column.name} is not a number"))
        rules.append((f"{typed} = 0", f"{column.name} is zero"))
    elif column.kind == "rate":
        rules.append(
            (
                f"{raw} is not null and ({typed} is null or {typed} not between {RATE_MIN} and {RATE_MAX})",
                f"{column.name} is not a number from {RATE_MIN} to {RATE_MAX}",
            )
        )
    elif column.kind == "number":
        rules.append((f"{raw} is not null and {typed} is null", f"{column.name} is not a number"))
    elif column.kind == "count":
        rules.append(
            (f"{raw} is not null and ({typed} is null or {typed} < 0)", f"{column.name} is not a whole number >= 0")
        )
    elif column.allowed:
        rules.append(
            (f"{raw} is not null and {typed} not in ({', '.join(repr(v) for v in column.allowed)})",
             f"{column.name} is not one of {', '.join(column.allowed)}")
        )
    elif column.kind == "score":
        rules.append(
            (
                f"{raw} is not null and ({typed} is null or {typed} not between {SCORE_MIN} and {SCORE_MAX})",
                f"{column.name} is not a whole number from {SCORE_MIN} to {SCORE_MAX}",
            )
        )
    return rules
