"""One small night of the next-best-offer decision, shared by tests/test_next_best_offer.py and
the nbo_* setting tests of tests/test_configuration.py (a session fixture in conftest.py): the
sample with its campaign history plus planted customers that each rule must block."""

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import yaml

from dagster_project import cli
from dagster_project.config import LoyaltyConfig
from dagster_project.next_best_offer import step
from dagster_project.sample_data import SAMPLE_AS_OF, generate_sample

from .support import NPS_HEADER, TRANSACTION_HEADER, query, write_csv

AS_OF = SAMPLE_AS_OF
CUSTOMERS = 1500
# planted customer -> (the offer its plant must block, the rule that must block it)
PLANTED = {
    "Z_RECENT": ("TILL_COUPON", "recent_purchase"),
    "Z_NOCONSENT": ("TILL_COUPON", "no_consent"),
    "Z_DETRACTOR": ("TILL_COUPON", "detractor"),
    "Z_COMPLAINT": ("TILL_COUPON", "complaint"),
    "Z_REJECTED": ("POINTS_EMAIL", "cooldown_after_reject"),
    "Z_OFFERCAP": ("TILL_COUPON", "offer_cap"),
    "Z_CHANNELCAP": ("POINTS_EMAIL", "channel_cap"),
}
ERASED = "C0000007"  # a sample customer with campaign history who asked to be erased
EVENT_HEADER = ["event_id", "customer_id", "offer_id", "channel", "event_type", "event_at", "arm"]


def _day(days_ago: int) -> str:
    return (AS_OF - dt.timedelta(days=days_ago)).isoformat()


def plant(raw: Path) -> None:
    rows, number = [], 0
    for customer in PLANTED:
        for days_ago in (300, 150, 20):
            number += 1
            rows.append((f"TZ{number:06d}", customer, _day(days_ago), "500.00", "P0100", "store"))
    rows.append(("TZ999999", "Z_RECENT", _day(2), "99.00", "P0008", "store"))  # TILL_COUPON's product
    write_csv(raw / "transactions" / "planted.csv", TRANSACTION_HEADER, rows)
    write_csv(raw / "nps" / "planted.csv", NPS_HEADER, [("RZ000001", "Z_DETRACTOR", _day(5), 2, "relational", None)])
    events = [
        ("EZ0001", "Z_COMPLAINT", "TILL_COUPON", "till", "complained", f"{_day(3)}T10:00:00", "ranked"),
        ("EZ0002", "Z_REJECTED", "POINTS_EMAIL", "email", "sent", f"{_day(10)}T10:00:00", "ranked"),
        ("EZ0003", "Z_REJECTED", "POINTS_EMAIL", "email", "rejected", f"{_day(5)}T10:00:00", "ranked"),
        *[(f"EZ01{i}", "Z_OFFERCAP", "TILL_COUPON", "till", "sent", f"{_day(d)}T10:00:00", "ranked") for i, d in enumerate((50, 40, 30, 20))],
        ("EZ0201", "Z_CHANNELCAP", "POINTS_EMAIL", "email", "sent", f"{_day(2)}T10:00:00", "ranked"),
    ]
    write_csv(raw / "offer_events" / "planted.csv", EVENT_HEADER, events)
    # A second offer of TILL_COUPON's group in another channel, without history: one of the two goes.
    write_csv(raw / "offers" / "planted.csv",
              ["offer_id", "channel", "offer_group", "start_date", "end_date", "expected_volume", "unit_margin", "response_window_days"],
              [("COUPON_APP", "app", "coupon", _day(30), _day(-30), 1, 100, 14)])
    width = max(7, len(str(CUSTOMERS)))
    consent = [(f"C{n:0{width}d}", "true", f"{AS_OF.isoformat()}T06:00:00") for n in range(1, CUSTOMERS + 1)]
    consent += [(c, "false" if c == "Z_NOCONSENT" else "true", f"{AS_OF.isoformat()}T06:00:00") for c in PLANTED]
    write_csv(raw / "erasures" / "erasures.csv", ["customer_id", "requested_at"], [(ERASED, f"{AS_OF.isoformat()}T05:00:00")])
    write_csv(raw / "customers" / "consent.csv", ["customer_id", "marketing_consent", "consent_updated_at"], consent)


@dataclasses.dataclass(frozen=True)
class Night:
    root: Path
    config: LoyaltyConfig

    @property
    def warehouse(self) -> Path:
        return self.config.warehouse_path

    def sql(self, text: str, params=None) -> list[tuple]:
        return query(self.warehouse, text, params)

    def variant(self, tmp_path: Path, **settings) -> "Night":
        """A copy of the warehouse with the NBO step run again under other settings."""
        tmp_path.mkdir(parents=True, exist_ok=True)
        copy = tmp_path / "variant.duckdb"
        shutil.copyfile(self.warehouse, copy)
        config = dataclasses.replace(self.config, warehouse=str(copy), **settings)
        step.run(config, AS_OF, log=lambda message: None)
        return Night(tmp_path, config)


def build_night(root: Path) -> Night:
    raw = root / "raw"
    generate_sample(raw, customers=CUSTOMERS, seed=5, campaigns=True)
    plant(raw)
    config = LoyaltyConfig(
        raw_dir=str(raw), warehouse=str(root / "w.duckdb"), export_dir=str(root / "exports"),
        publish_dir=str(root / "published"), log_dir=str(root / "logs"),
    )
    file = root / "nbo.yml"
    file.write_text(yaml.safe_dump({k: getattr(config, k) for k in ("raw_dir", "warehouse", "export_dir", "publish_dir", "log_dir")}))
    assert cli.main(["run", "--config", str(file), "--as-of", AS_OF.isoformat()]) == 0
    return Night(root, config)
