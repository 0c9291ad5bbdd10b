"""Settings of one warehouse: paths and the business constants, read from one optional YAML file.

Every business constant is defined here once (``LoyaltyConfig``'s defaults) and reaches dbt
as a var through :func:`dbt_vars`, the Great Expectations suites as parameters (quality.
suite_parameters), and the partitions and schedule through the definitions built from
it, so no SQL, YAML or JSON repeats a number.

One run has one *effective configuration*, resolved once by :func:`resolve_config`: the
defaults, then the file (``--config FILE``, else ``$LOYALTY_CONFIG``, else ``loyalty.yml`` at the
project root if it exists), then the command-line flags. Nothing reads it at import time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import zoneinfo
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "loyalty.yml"
# The config file of `dagster dev`, the daemon and any process started without --config.
CONFIG_ENV = "LOYALTY_CONFIG"

# Value segments from the most to the least valuable; the cut-off of a segment is the upper
# bound (exclusive) of the value share it covers. ``bottom`` takes the rest.
SEGMENTS = ("super", "top", "middle", "bottom")


# dbt's period and day series are 0 … 10^4 − 1 (macros/business_rules.sql: integer_series(4)).
MAX_PERIODS = 9_999
# The engines that run the dbt models, and the Spark connection methods with their default ports
# (session: a local PySpark session, no port).
ENGINES = ("duckdb", "spark")
SPARK_DEFAULT_PORTS = {"session": None, "thrift": 10000, "http": 443}
# DuckDB and pandas both handle dates from 1900 on without surprises; older is a typo.
MIN_BUSINESS_START_YEAR = 1900


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the key."""


class RunDateError(ValueError):
    """An as-of date (or range) that a run cannot have; the message names the date, the rule and
    the setting to change."""


@dataclasses.dataclass(frozen=True)
class LoyaltyConfig:
    # Paths (relative paths resolve against the project root, never the working directory).
    raw_dir: str = "data/raw"
    warehouse: str = "data/warehouse.duckdb"
    # Length of one comparison period in months (12 = yearly F12/S12, 3 = quarterly).
    period_months: int = 12
    # At most this many periods per as-of date (None: as many as the history holds). Each period
    # adds a row per active customer to customer_period_facts (see BENCHMARKS.md, long histories).
    max_periods: int | None = None
    # Cumulative value-share cut-offs: super < 0.05 ≤ top < 0.20 ≤ middle < 0.70 ≤ bottom.
    segment_cutoffs: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"super": 0.05, "top": 0.20, "middle": 0.70}
    )
    # NPS answer bands (inclusive lower bounds): promoters 9–10, passives 7–8, detractors 0–6.
    nps_promoter_min: int = 9
    nps_passive_min: int = 7
    # Lifecycle stages at the as-of date (checked in this order: lost, won_back, new, at_risk, active).
    lost_after_days: int = 365  # no purchase for this long: lost (non-contractual churn)
    won_back_days: int = 100  # a purchase this recently after a gap longer than lost_after_days
    new_customer_days: int = 100  # first purchase ever this recently: new (onboarding window)
    at_risk_min_days: int = 90  # at risk after max(this, gap factor × own median gap) days
    at_risk_gap_factor: float = 2.0
    detractor_followup_days: int = 30  # a detractor answer this recent triggers a follow-up call
    nps_due_from_day: int = 90  # onboarding NPS is due between these days after the first purchase
    nps_due_to_day: int = 110
    # CLV on margin and discounted (marts.segment_clv): the share of revenue that is margin for
    # transactions without a product in the products/ landing folder (1.0: CLV on revenue), and
    # the yearly discount rate d of clv_discounted = m × (1 + d) ÷ (1 + d − r).
    margin_rate: float = 1.0
    discount_rate: float = 0.10
    # Predictive CLV per customer (dagster_project/predictive_clv): the purchase model ("mbg_nbd":
    # MBG/NBD, gives one-time buyers a P(alive) below 1; "bg_nbd": BG/NBD, for comparison), the
    # horizon of predicted_clv in years, the fewest repeat buyers a fit accepts (fewer: the fit is
    # skipped with a message), and the P(alive) from which the calibration counts a customer as
    # predicted alive.
    clv_model: str = "mbg_nbd"
    clv_horizon_years: float = 3.0
    clv_min_repeat_customers: int = 100
    clv_alive_threshold: float = 0.5
    # The fits (not the predictions) use at most this many customers, a deterministic sample by the
    # hash of customer_id: population parameters from 100 000 customers are as good as from
    # millions (standard errors shrink with the square root), and the fit time stays bounded.
    clv_fit_max_customers: int = 100_000
    # Next best offer (dagster_project/next_best_offer; README "Next best offer").
    # Contact policy per channel: at most `max` contacts (sent events) per customer in the last
    # `days` days; channels not named here have no channel cap (offers may still cap themselves).
    nbo_contact_policy: Mapping[str, Mapping[str, int]] = dataclasses.field(
        default_factory=lambda: {"email": {"max": 1, "days": 7}, "sms": {"max": 1, "days": 7}}
    )
    # Arms by a persistent hash of salt + customer_id (never reshuffled when customers arrive): the
    # lowest control share of hash values is the control group (an explicit `none` row), the next
    # random share gets a random eligible offer, everyone else the ranked one.
    nbo_control_share: float = 0.10
    nbo_random_share: float = 0.05
    nbo_arm_salt: str = "nbo-arms-v1"
    # Propensity tiers per offer: without history, prior scale × P(a purchase in the response
    # window) from the predictive CLV; with history, response rates per offer × segment × stage
    # smoothed toward that prior with this many pseudo-contacts; from this many positive responses
    # on, a calibrated classifier (temporal split: the latest holdout share of contacts judges it)
    # used only when its holdout AUC beats the smoothed rates'.
    nbo_prior_scale: float = 0.2
    nbo_smoothing_strength: float = 20.0
    nbo_min_positive_responses: int = 200
    nbo_holdout_share: float = 0.25
    # Uplift ranking for an offer once this many control-arm (held_out) contacts of it exist.
    nbo_min_control_contacts: int = 30
    # Offers kept per customer (None: the best of each channel, at most one per channel).
    nbo_top_k: int | None = None
    # Seed of the classifier and of the random arm's draw: the same night gives the same bytes.
    nbo_seed: int = 42
    # Ingest: rows dated before this are quarantined as implausible; rejected files fail the run
    # unless skip_rejected_files is true.
    business_start_date: str = "2000-01-01"
    skip_rejected_files: bool = False
    # Per landing folder (transactions, nps, customers, erasures): delimiter, decimal_separator,
    # encoding ("utf-8" or "cp1252"); anything left out is detected.
    landing_formats: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    # Export for marketing automation: folder, columns of personal data allowed besides customer_id,
    # and the oldest consent file (in days) the export accepts.
    export_dir: str = "data/exports"
    export_pii_columns: tuple[str, ...] = ()
    consent_max_age_days: int = 7
    # Published read-only copy for BI tools.
    publish_dir: str = "data/published"
    # The `loyalty` command's log (loyalty.log): every run's steps and, on failure, the traceback.
    log_dir: str = "data/logs"
    # HTML KPI report (publish_dir/report/, dagster_project/kpi_report): the currency amounts are
    # shown in, and the fewest answers a flow cell needs before the report shows its NPS.
    currency: str = "SEK"
    report_min_nps_responses: int = 30
    # PNG thumbnails of two charts in the Dagster UI's preview of the report (kaleido, from the
    # `thumbnails` extra, and a Chromium): about 5-8 s a run, so a run pays it only when asked.
    report_thumbnails: bool = False
    # Nightly schedule.
    schedule_cron: str = "0 2 * * *"
    schedule_timezone: str = "Europe/Stockholm"
    # dbt unit tests (given/expect rows for every business rule) belong to development and CI:
    # `make test` runs them; a nightly run skips them unless this is true.
    run_dbt_unit_tests: bool = False
    # DuckDB resources (None: DuckDB's defaults); a temp directory lets large runs spill to disk.
    duckdb_memory_limit: str | None = None
    duckdb_threads: int | None = None
    duckdb_temp_dir: str | None = None
    # The engine that runs the dbt models (README "Running on Spark"): "duckdb" (one machine, the
    # default) or "spark" (dbt-spark). Ingest, the checks, export, publish and report stay the same
    # code: on spark the raw tables go to Parquet for Spark's sources and the built tables come back.
    engine: str = "duckdb"
    # Spark: "session" (a local PySpark session inside the dbt process, at spark_master), "thrift"
    # (a Spark Thrift server at spark_host:spark_port) or "http" (a Databricks-style cluster:
    # spark_host, spark_cluster). spark_token_env is the NAME of the environment variable holding
    # the cluster's token (never the token itself: loyalty.yml is in git). spark_dir holds the raw
    # Parquet dataset and Spark's tables (None: beside the warehouse file, <stem>.spark/); on a
    # cluster it must be storage the cluster reads (a mounted path). spark_driver_memory: the local
    # session's JVM heap.
    spark_method: str = "session"
    spark_master: str = "local[2]"
    spark_host: str | None = None
    spark_port: int | None = None  # None: 10000 for thrift, 443 for http
    spark_cluster: str | None = None
    spark_token_env: str = "LOYALTY_SPARK_TOKEN"
    spark_dir: str | None = None
    spark_driver_memory: str = "2g"

    def __post_init__(self) -> None:
        validate(self)

    @property
    def raw_path(self) -> Path:
        return resolve_path(self.raw_dir)

    @property
    def warehouse_path(self) -> Path:
        return resolve_path(self.warehouse)

    @property
    def spark_path(self) -> Path:
        if self.spark_dir:
            return resolve_path(self.spark_dir)
        return self.warehouse_path.with_name(self.warehouse_path.stem + ".spark")

    @property
    def export_path(self) -> Path:
        return resolve_path(self.export_dir)

    @property
    def publish_path(self) -> Path:
        return resolve_path(self.publish_dir)

    @property
    def log_path(self) -> Path:
        return resolve_path(self.log_dir) / "loyalty.log"

    def with_overrides(self, **overrides: Any) -> "LoyaltyConfig":
        """A copy with the non-None overrides applied (CLI flags win over the file)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return dataclasses.replace(self, **given)


def resolve_path(path: str | os.PathLike) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (PROJECT_ROOT / candidate).resolve()


def validate(config: LoyaltyConfig) -> None:
    if not isinstance(config.period_months, int) or not 1 <= config.period_months <= 120:
        raise ConfigError(f"period_months must be an integer from 1 to 120, got {config.period_months!r}")
    cutoffs = dict(config.segment_cutoffs)
    if set(cutoffs) != set(SEGMENTS[:-1]):
        raise ConfigError(f"segment_cutoffs needs exactly the keys {list(SEGMENTS[:-1])}, got {sorted(cutoffs)}")
    bounds = [cutoffs[name] for name in SEGMENTS[:-1]]
    if not all(isinstance(b, (int, float)) for b in bounds) or not 0 < bounds[0] < bounds[1] < bounds[2] < 1:
        raise ConfigError(f"segment_cutoffs must rise strictly within (0, 1): {cutoffs}")
    if not 0 <= config.nps_passive_min < config.nps_promoter_min <= 10:
        raise ConfigError("nps bands need 0 <= nps_passive_min < nps_promoter_min <= 10")
    for name in ("lost_after_days", "won_back_days", "new_customer_days", "at_risk_min_days",
                 "detractor_followup_days", "nps_due_from_day", "nps_due_to_day", "consent_max_age_days"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{name} must be a whole number of days >= 0, got {value!r}")
    if not isinstance(config.at_risk_gap_factor, (int, float)) or config.at_risk_gap_factor <= 0:
        raise ConfigError(f"at_risk_gap_factor must be a positive number, got {config.at_risk_gap_factor!r}")
    if config.nps_due_from_day > config.nps_due_to_day:
        raise ConfigError("nps_due_from_day must not be after nps_due_to_day")
    for folder, fmt in dict(config.landing_formats).items():
        unknown = set(fmt) - {"delimiter", "decimal_separator", "encoding"}
        if unknown:
            raise ConfigError(f"landing_formats.{folder}: unknown keys {sorted(unknown)}")
        if fmt.get("decimal_separator") not in (None, ".", ","):
            raise ConfigError(f"landing_formats.{folder}.decimal_separator must be '.' or ','")
    if config.max_periods is not None and (
        not isinstance(config.max_periods, int) or isinstance(config.max_periods, bool) or not 2 <= config.max_periods <= MAX_PERIODS
    ):
        raise ConfigError(f"max_periods must be empty or a whole number from 2 to {MAX_PERIODS}, got {config.max_periods!r}")
    if config.duckdb_threads is not None and (not isinstance(config.duckdb_threads, int) or config.duckdb_threads < 1):
        raise ConfigError(f"duckdb_threads must be empty or a whole number >= 1, got {config.duckdb_threads!r}")
    if isinstance(config.margin_rate, bool) or not isinstance(config.margin_rate, (int, float)) or not -1 <= config.margin_rate <= 1:
        raise ConfigError(f"margin_rate must be a number from -1 to 1 (a share of revenue), got {config.margin_rate!r}")
    if isinstance(config.discount_rate, bool) or not isinstance(config.discount_rate, (int, float)) or not 0 <= config.discount_rate < 1:
        raise ConfigError(f"discount_rate must be a yearly rate from 0 to below 1 (0.10 = 10 %), got {config.discount_rate!r}")
    if config.clv_model not in ("mbg_nbd", "bg_nbd"):
        raise ConfigError(f"clv_model must be 'mbg_nbd' or 'bg_nbd', got {config.clv_model!r}")
    if isinstance(config.clv_horizon_years, bool) or not isinstance(config.clv_horizon_years, (int, float)) or not 0 < config.clv_horizon_years <= 50:
        raise ConfigError(f"clv_horizon_years must be a number of years from above 0 to 50, got {config.clv_horizon_years!r}")
    if isinstance(config.clv_min_repeat_customers, bool) or not isinstance(config.clv_min_repeat_customers, int) or config.clv_min_repeat_customers < 1:
        raise ConfigError(f"clv_min_repeat_customers must be a whole number >= 1, got {config.clv_min_repeat_customers!r}")
    if isinstance(config.clv_fit_max_customers, bool) or not isinstance(config.clv_fit_max_customers, int) or config.clv_fit_max_customers < 1000:
        raise ConfigError(f"clv_fit_max_customers must be a whole number >= 1000, got {config.clv_fit_max_customers!r}")
    if isinstance(config.clv_alive_threshold, bool) or not isinstance(config.clv_alive_threshold, (int, float)) or not 0 < config.clv_alive_threshold < 1:
        raise ConfigError(f"clv_alive_threshold must be a probability strictly between 0 and 1, got {config.clv_alive_threshold!r}")
    for name in ("skip_rejected_files", "run_dbt_unit_tests", "report_thumbnails"):
        if not isinstance(getattr(config, name), bool):
            raise ConfigError(f"{name} must be true or false, got {getattr(config, name)!r}")
    if config.engine not in ENGINES:
        raise ConfigError(f"engine must be one of {list(ENGINES)}, got {config.engine!r}")
    if config.spark_method not in SPARK_DEFAULT_PORTS:
        raise ConfigError(f"spark_method must be one of {list(SPARK_DEFAULT_PORTS)}, got {config.spark_method!r}")
    if config.engine == "spark" and config.spark_method != "session" and not config.spark_host:
        raise ConfigError(f"spark_method {config.spark_method!r} needs spark_host (the cluster's address)")
    if config.spark_method == "http" and config.engine == "spark" and not config.spark_cluster:
        raise ConfigError("spark_method 'http' needs spark_cluster (the cluster id)")
    if config.spark_port is not None and (isinstance(config.spark_port, bool) or not isinstance(config.spark_port, int) or not 0 < config.spark_port < 65536):
        raise ConfigError(f"spark_port must be empty or a port number, got {config.spark_port!r}")
    if not isinstance(config.spark_token_env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", config.spark_token_env):
        raise ConfigError(f"spark_token_env must be the name of an environment variable (not the token), got {config.spark_token_env!r}")
    validate_nbo(config)
    try:
        start = dt.date.fromisoformat(str(config.business_start_date))
    except ValueError as error:
        raise ConfigError(f"business_start_date must be YYYY-MM-DD, got {config.business_start_date!r}") from error
    if start.year < MIN_BUSINESS_START_YEAR:
        raise ConfigError(f"business_start_date must be in {MIN_BUSINESS_START_YEAR} or later, got {config.business_start_date!r}")
    if not isinstance(config.schedule_cron, str) or len(config.schedule_cron.split()) != 5:
        raise ConfigError(f"schedule_cron must be a cron expression of five fields, got {config.schedule_cron!r}")
    try:
        zoneinfo.ZoneInfo(str(config.schedule_timezone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigError(f"schedule_timezone must be an IANA time zone such as Europe/Stockholm, got {config.schedule_timezone!r}") from error


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def validate_nbo(config: LoyaltyConfig) -> None:
    for channel, rule in dict(config.nbo_contact_policy).items():
        if not isinstance(rule, Mapping) or set(rule) != {"max", "days"} or not _is_count(rule["max"], 0) or not _is_count(rule["days"], 1):
            raise ConfigError(f"nbo_contact_policy.{channel} must be {{max: whole number >= 0, days: whole number >= 1}}, got {rule!r}")
    for name in ("nbo_control_share", "nbo_random_share", "nbo_holdout_share"):
        value = getattr(config, name)
        if not _is_number(value) or not 0 <= value < 1:
            raise ConfigError(f"{name} must be a share from 0 to below 1, got {value!r}")
    if config.nbo_control_share + config.nbo_random_share >= 1:
        raise ConfigError("nbo_control_share + nbo_random_share must stay below 1 (someone must get the ranked offer)")
    if not isinstance(config.nbo_arm_salt, str) or not config.nbo_arm_salt:
        raise ConfigError(f"nbo_arm_salt must be a non-empty text, got {config.nbo_arm_salt!r}")
    if not _is_number(config.nbo_prior_scale) or not 0 < config.nbo_prior_scale <= 1:
        raise ConfigError(f"nbo_prior_scale must be a number from above 0 to 1, got {config.nbo_prior_scale!r}")
    if not _is_number(config.nbo_smoothing_strength) or config.nbo_smoothing_strength <= 0:
        raise ConfigError(f"nbo_smoothing_strength must be a positive number of pseudo-contacts, got {config.nbo_smoothing_strength!r}")
    for name in ("nbo_min_positive_responses", "nbo_min_control_contacts", "nbo_seed"):
        if not _is_count(getattr(config, name), 0 if name == "nbo_seed" else 1):
            raise ConfigError(f"{name} must be a whole number >= {0 if name == 'nbo_seed' else 1}, got {getattr(config, name)!r}")
    if config.nbo_top_k is not None and not _is_count(config.nbo_top_k, 1):
        raise ConfigError(f"nbo_top_k must be empty (one per channel) or a whole number >= 1, got {config.nbo_top_k!r}")


def config_file(path: str | os.PathLike | None = None) -> Path | None:
    """The file a run reads: ``path``, else ``$LOYALTY_CONFIG``, else ``loyalty.yml`` at the
    project root if it exists, else None (the defaults)."""
    if path:
        return resolve_path(path)
    if os.environ.get(CONFIG_ENV):
        return resolve_path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


def resolve_config(path: str | os.PathLike | None = None, **overrides: Any) -> LoyaltyConfig:
    """The effective configuration of one run: defaults < the file (see :func:`config_file`) <
    ``overrides`` (command-line flags; None means "not given")."""
    return load_config(config_file(path)).with_overrides(**overrides)


def load_config(path: str | os.PathLike | None = None) -> LoyaltyConfig:
    """Reads ``path`` (or ``loyalty.yml`` at the project root when it exists); unknown keys fail."""
    file = Path(path) if path is not None else DEFAULT_CONFIG_FILE
    if path is None and not file.exists():
        return LoyaltyConfig()
    if not file.exists():
        raise ConfigError(f"config file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of keys to values")
    known = {field.name for field in dataclasses.fields(LoyaltyConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{file}: unknown keys {unknown}; known keys: {sorted(known)}")
    if "export_pii_columns" in data:
        data["export_pii_columns"] = tuple(data["export_pii_columns"] or ())
    if isinstance(data.get("business_start_date"), dt.date):  # YAML reads an unquoted date as a date
        data["business_start_date"] = data["business_start_date"].isoformat()
    try:
        return LoyaltyConfig(**data)
    except ConfigError as error:
        raise ConfigError(f"{file}: {error}") from error


def dbt_vars(config: LoyaltyConfig, as_of: dt.date | Sequence[dt.date]) -> dict[str, Any]:
    """The dbt ``--vars`` of one run: its as-of date(s) and every business constant.

    ``as_of_dates`` are all dates of the run (a backfill computes a range in one dbt build);
    ``as_of_date`` is the latest, the date of the customer-level marts.
    """
    dates = sorted({as_of} if isinstance(as_of, dt.date) else set(as_of))
    if not dates:
        raise ConfigError("a run needs at least one as-of date")
    return {
        "as_of_date": dates[-1].isoformat(),
        "as_of_dates": [date.isoformat() for date in dates],
        "period_months": config.period_months,
        "segment_cutoffs": {name: float(config.segment_cutoffs[name]) for name in SEGMENTS[:-1]},
        "nps_promoter_min": config.nps_promoter_min,
        "nps_passive_min": config.nps_passive_min,
        "lost_after_days": config.lost_after_days,
        "won_back_days": config.won_back_days,
        "new_customer_days": config.new_customer_days,
        "at_risk_min_days": config.at_risk_min_days,
        "at_risk_gap_factor": float(config.at_risk_gap_factor),
        "detractor_followup_days": config.detractor_followup_days,
        "nps_due_from_day": config.nps_due_from_day,
        "nps_due_to_day": config.nps_due_to_day,
        "max_periods": config.max_periods if config.max_periods is not None else MAX_PERIODS,
        "margin_rate": float(config.margin_rate),
        "discount_rate": float(config.discount_rate),
        "nbo_contact_policy": {channel: {"max": int(rule["max"]), "days": int(rule["days"])}
                               for channel, rule in sorted(dict(config.nbo_contact_policy).items())},
        "warehouse_path": str(config.warehouse_path),
    }


def to_json(config: LoyaltyConfig) -> str:
    """The whole configuration as JSON (what a run's resource carries: the one resolved object)."""
    data = dataclasses.asdict(config)
    return json.dumps(data, sort_keys=True)


def from_json(text: str) -> LoyaltyConfig:
    data = json.loads(text)
    data["export_pii_columns"] = tuple(data.get("export_pii_columns") or ())
    return LoyaltyConfig(**data)


def check_run_dates(config: LoyaltyConfig, dates: Sequence[dt.date], today: dt.date) -> None:
    """Raises RunDateError for as-of dates a run cannot have: before business_start_date (no row
    can be dated then) or after tomorrow (the partitions end there; nothing is dated then yet)."""
    start = dt.date.fromisoformat(config.business_start_date)
    for date in (min(dates), max(dates)):
        if date < start:
            raise RunDateError(
                f"as-of date {date} is before business_start_date {start}: no row can be dated then "
                "(set business_start_date in the config file to an earlier date)"
            )
        if date > today + dt.timedelta(days=1):
            raise RunDateError(
                f"as-of date {date} is in the future: the latest as-of date a run can have is tomorrow, "
                f"{today + dt.timedelta(days=1)} (today is {today})"
            )


def yesterday(today: dt.date | None = None) -> dt.date:
    return (today or dt.date.today()) - dt.timedelta(days=1)
