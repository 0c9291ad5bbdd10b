"""The next-best-offer decision: every rule recomputed from the raw tables, planted customers
blocked by their rule, a re-run byte-identical, persistent arms, the propensity tiers and a
classifier judged on contacts it never saw. One pipeline night (the nbo_night session fixture,
tests/nbo_support.py); everything else is unit tests on small frames."""

import datetime as dt
import hashlib

import numpy as np
import pandas as pd
import pytest

from dagster_project.config import LoyaltyConfig
from dagster_project.ingest import ingest_source
from dagster_project.next_best_offer import classifier, performance, propensity, step
from dagster_project.next_best_offer.arms import arm_of, hash_fraction
from dagster_project.raw_contract import OFFER_EVENTS, OFFERS
from dagster_project.warehouse import connect

from .nbo_support import AS_OF, PLANTED
from .support import write_csv


def _frame(night, sql):
    with connect(night.warehouse, read_only=True) as con:
        return con.execute(sql).df()


# ------------------------------------------------------------------ rules, recomputed from raw
def violations(night) -> dict[str, int]:
    """Every rule checked on next_best_offers from the raw tables (and the flags' segment and
    stage), not from the models that applied them."""
    c = night.config
    policy = " union all ".join(
        f"select '{ch}' as channel, {r['max']} as max_contacts, {r['days']} as days" for ch, r in c.nbo_contact_policy.items()
    )
    checks = {
        "not_live": "o.start_date > d.as_of_date or o.end_date < d.as_of_date",
        "no_consent": "coalesce(o.requires_consent, true) and exists (select 1 from consent k where k.customer_id = d.customer_id and not k.marketing_consent)",
        "segment": "o.eligible_segments is not null and not list_contains(string_split(o.eligible_segments, '|'), coalesce(f.value_segment, '-'))",
        "stage": "o.eligible_stages is not null and not list_contains(string_split(o.eligible_stages, '|'), coalesce(f.lifecycle_stage, '-'))",
        "recent_purchase": "o.suppress_after_purchase_days is not null and exists (select 1 from raw.transactions t where t.customer_id = d.customer_id"
        " and t.amount > 0 and (o.product_id is null or t.product_id = o.product_id)"
        " and d.as_of_date - t.transaction_date between 0 and o.suppress_after_purchase_days - 1)",
        "detractor": f"exists (select 1 from raw.nps_responses n where n.customer_id = d.customer_id and n.score < {c.nps_passive_min}"
        f" and d.as_of_date - n.response_date between 0 and {c.detractor_followup_days - 1})",
        "complaint": f"exists (select 1 from raw.offer_events e where e.customer_id = d.customer_id and e.event_type = 'complained'"
        f" and d.as_of_date - cast(e.event_at as date) between 0 and {c.detractor_followup_days - 1})",
        "cooldown": "o.cooldown_after_reject_days is not null and exists (select 1 from raw.offer_events e where e.customer_id = d.customer_id"
        " and e.offer_id = d.offer_id and e.event_type = 'rejected' and d.as_of_date - cast(e.event_at as date) between 0 and o.cooldown_after_reject_days - 1)",
        "offer_cap": "o.max_per_customer is not null and (select count(*) from raw.offer_events e where e.customer_id = d.customer_id"
        " and e.offer_id = d.offer_id and e.event_type = 'sent' and d.as_of_date - cast(e.event_at as date) between 0 and coalesce(o.cap_window_days, 100000) - 1)"
        " >= o.max_per_customer",
        "channel_cap": "exists (select 1 from policy p where p.channel = d.channel and (select count(*) from raw.offer_events e"
        " join raw.offers eo on eo.offer_id = e.offer_id where e.customer_id = d.customer_id and eo.channel = p.channel and e.event_type = 'sent'"
        " and d.as_of_date - cast(e.event_at as date) between 0 and p.days - 1) >= p.max_contacts)",
        "priority": "d.arm = 'ranked' and d.priority <= 0",
    }
    found = {}
    with connect(night.warehouse, read_only=True) as con:
        con.execute(f"create temp view policy as {policy}")
        con.execute("create temp view consent as select * from raw.customers qualify row_number() over"
                    " (partition by customer_id order by consent_updated_at desc, marketing_consent) = 1")
        for name, condition in checks.items():
            found[name] = con.execute(
                "select count(*) from marts.next_best_offers d join raw.offers o using (offer_id)"
                f" left join marts.customer_segment_flags f using (customer_id) where {condition}"
            ).fetchone()[0]
        found["offer_group"] = con.execute(
            "select count(*) from (select customer_id, offer_group from marts.next_best_offers join raw.offers using (offer_id)"
            " group by all having count(*) > 1)").fetchone()[0]
        found["one_per_channel"] = con.execute(
            "select count(*) from (select customer_id, channel from marts.next_best_offers group by all having count(*) > 1)").fetchone()[0]
        found["volume_cap"] = con.execute(
            "select count(*) from (select offer_id, count(*) n, any_value(o.volume_cap) cap from marts.next_best_offers"
            " join raw.offers o using (offer_id) group by offer_id) where n > cap").fetchone()[0]
        found["control_gets_offer"] = con.execute(
            "select count(*) from marts.next_best_offers where arm = 'control' and offer_id <> 'none'").fetchone()[0]
        found["not_in_population"] = con.execute(
            "select count(*) from marts.next_best_offers where customer_id not in (select customer_id from marts.customer_segment_flags)"
            " or customer_id in (select customer_id from raw.erasures)").fetchone()[0]
    return found


def test_every_rule_recomputed_from_the_raw_tables_finds_no_violation(nbo_night):
    found = violations(nbo_night)
    assert found == dict.fromkeys(found, 0)
    # and the rules did block something: every dbt rule and every rule after the propensity
    dropped = dict(nbo_night.sql("select drop_rule, count(*) from marts.nbo_candidates where drop_rule is not null group by 1"))
    for rule in ("not_live", "no_consent", "not_eligible_segment", "not_eligible_stage", "recent_purchase", "detractor", "complaint",
                 "cooldown_after_reject", "offer_cap", "channel_cap", "priority_not_positive", "offer_group", "top_k",
                 "control_group", "random_arm"):
        assert dropped.get(rule, 0) > 0, rule


def test_each_planted_customer_is_blocked_by_its_rule(nbo_night):
    rows = dict(((c, o), r) for c, o, r in nbo_night.sql(
        "select customer_id, offer_id, drop_rule from marts.nbo_candidates where customer_id like 'Z_%'"))
    offered = set(nbo_night.sql("select customer_id, offer_id from marts.next_best_offers where customer_id like 'Z_%'"))
    for customer, (offer, rule) in PLANTED.items():
        assert rows[(customer, offer)] == rule, customer
        assert (customer, offer) not in offered


def test_the_audit_explains_every_customer_and_every_exported_row(nbo_night):
    audit = _frame(nbo_night, "select * from marts.nbo_candidates")
    offers = _frame(nbo_night, "select * from marts.next_best_offers")
    population = {r[0] for r in nbo_night.sql("select customer_id from marts.customer_segment_flags")}
    assert set(offers["customer_id"]) == population  # everyone has a row: an offer or an explicit none
    real = offers[offers["offer_id"] != "none"].merge(audit, on=["customer_id", "offer_id"], suffixes=("", "_audit"))
    assert len(real) == (offers["offer_id"] != "none").sum()
    assert real["is_selected"].all() and (real["slot"] == real["slot_audit"]).all()
    assert np.allclose(real["priority"], real["priority_audit"])
    # priority is propensity × value × weight, or the incremental value under the uplift ranking
    rules = _frame(nbo_night, "select customer_id, offer_id, gross_value, contact_cost from marts.nbo_candidate_rules")
    a = audit.merge(rules, on=["customer_id", "offer_id"])
    expected = np.where(a["ranking"] == "uplift", (a["incremental_propensity"] * a["gross_value"] - a["contact_cost"]) * a["business_weight"],
                        a["propensity"] * a["expected_value"] * a["business_weight"])
    assert np.allclose(a["priority"], expected)
    assert np.allclose(a["expected_value"], a["gross_value"] - a["contact_cost"])


def test_rerunning_the_night_gives_byte_identical_marts(nbo_night, tmp_path):
    tables = ("nbo_candidates", "next_best_offers", "nbo_performance", "next_best_offer_summary")

    def dump(warehouse):
        with connect(warehouse, read_only=True) as con:
            return {t: con.execute(f"select * from marts.{t} order by all").fetchall() for t in tables}

    again = nbo_night.variant(tmp_path)
    assert dump(again.warehouse) == dump(nbo_night.warehouse)


# ------------------------------------------------------------------ arms
def test_arms_never_change_when_customers_arrive_and_match_the_shares():
    config = LoyaltyConfig()
    first = [f"C{n:07d}" for n in range(1, 20_001)]
    later = [f"N{n:07d}" for n in range(1, 5_001)] + first[::-1]
    before = dict(zip(first, arm_of(first, config)))
    after = dict(zip(later, arm_of(later, config)))
    assert all(after[c] == before[c] for c in first)
    shares = pd.Series(list(before.values())).value_counts(normalize=True)
    assert abs(shares["control"] - config.nbo_control_share) < 0.01
    assert abs(shares["random"] - config.nbo_random_share) < 0.01
    assert (hash_fraction(first[:3], config.nbo_arm_salt) == hash_fraction(first[:3], config.nbo_arm_salt)).all()


def test_the_hash_fraction_is_md5s_first_32_bits_of_the_utf8_id():
    ids = ["C0000001", "åäö-ü", "客户42", "a'b", " x ", ""]
    expected = [int.from_bytes(hashlib.md5(f"salt'1:{c}".encode()).digest()[:4], "big") / 2**32 for c in ids]
    assert hash_fraction(ids, "salt'1").tolist() == expected


def test_the_night_uses_the_persistent_arms_and_the_history_too(nbo_night):
    arms = dict(nbo_night.sql("select distinct customer_id, arm from marts.next_best_offers"))
    assert arms == dict(zip(arms, arm_of(list(arms), nbo_night.config)))
    held_out = {r[0] for r in nbo_night.sql("select customer_id from raw.offer_events where event_type = 'held_out'")}
    assert held_out and all(arms.get(c, "control") == "control" for c in held_out)


# ------------------------------------------------------------------ propensity tiers
def _contacts(n: int, seed: int, signal: float) -> pd.DataFrame:
    """Synthetic closed contacts: at-risk customers respond with 5 % + signal, others with 5 %."""
    rng = np.random.default_rng(seed)
    at_risk = rng.random(n) < 0.5
    frame = pd.DataFrame({
        "event_id": [f"E{i:06d}" for i in range(n)], "customer_id": [f"C{i:06d}" for i in range(n)], "offer_id": "X",
        "arm": np.where(rng.random(n) < 0.15, "control", "ranked"),
        "contact_date": pd.to_datetime("2026-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
        "is_window_closed": True, "value_band": np.where(rng.random(n) < 0.2, "vip", "other"),
        "activity_state": np.where(at_risk, "at_risk", "active"),
        "recency_days": np.where(at_risk, 200, 20) + rng.integers(0, 30, n), "tenure_days": rng.integers(200, 2000, n),
        "purchases_365d": rng.integers(0, 10, n), "revenue_365d": rng.random(n) * 5000,
    })
    frame["is_response"] = rng.random(n) < 0.05 + signal * at_risk
    return frame


def _customers(contacts: pd.DataFrame) -> pd.DataFrame:
    return contacts.drop(columns=["arm", "is_response", "contact_date", "is_window_closed", "offer_id", "event_id"]).assign(
        p_alive=0.8, expected_purchases_next_period=2.0)


def test_tier_rule_case_by_case():
    c = LoyaltyConfig(nbo_min_positive_responses=50)
    assert propensity.choose_tier(0, 0, None, None, c) == "prior"
    assert propensity.choose_tier(100, 49, 0.9, 0.5, c) == "smoothed"  # too few positives for a model
    assert propensity.choose_tier(1000, 50, 0.61, 0.60, c) == "model"
    assert propensity.choose_tier(1000, 50, 0.60, 0.60, c) == "smoothed"  # must beat, not tie
    assert propensity.choose_tier(1000, 50, None, 0.6, c) == "smoothed"


def test_prior_and_smoothed_tiers_follow_their_formulas():
    config = LoyaltyConfig(nbo_min_positive_responses=10**6)
    contacts = _contacts(400, 1, 0.2)
    customers = _customers(contacts).head(50)
    frame, model = propensity.score_offer("X", 14, customers, contacts.iloc[:0], config)
    rate = 2.0 / 0.8 / (12 * 365.25 / 12)
    assert model.tier == "prior" and np.allclose(frame["propensity"], config.nbo_prior_scale * 0.8 * (1 - np.exp(-rate * 14)))
    frame, model = propensity.score_offer("X", 14, customers, contacts, config)
    treated = contacts[contacts["arm"] != "control"]
    k = config.nbo_smoothing_strength
    prior = config.nbo_prior_scale * 0.8 * (1 - np.exp(-rate * 14))
    for cell, group in treated.groupby(["value_band", "activity_state"]):
        mine = (customers["value_band"] == cell[0]) & (customers["activity_state"] == cell[1])
        assert np.allclose(frame.loc[mine.to_numpy(), "propensity"], (group["is_response"].sum() + k * prior) / (len(group) + k))
    assert model.tier == "smoothed" and model.ranking == "uplift"


def test_the_classifier_is_used_only_when_it_beats_the_smoothed_rates_on_later_contacts(monkeypatch):
    config = LoyaltyConfig(nbo_min_positive_responses=30)
    seen = []
    original = classifier.fit
    monkeypatch.setattr(classifier, "fit", lambda frame, seed: seen.append(set(frame["event_id"])) or original(frame, seed))
    contacts = _contacts(4000, 2, 0.25)
    # recency carries signal the cells do not: within each cell, the more recent respond more
    contacts["is_response"] |= (contacts["recency_days"] % 30 < 3) & (np.random.default_rng(3).random(len(contacts)) < 0.6)
    frame, model = propensity.score_offer("X", 14, _customers(contacts), contacts, config)
    treated = contacts[contacts["arm"] != "control"]
    train, holdout = propensity.temporal_split(treated, config.nbo_holdout_share)
    assert treated["contact_date"][train].max() < treated["contact_date"][holdout].min()
    assert seen and not (seen[0] & set(treated["event_id"][holdout]))  # never saw the holdout
    assert model.model_auc is not None and model.smoothed_auc is not None
    assert model.tier == ("model" if model.model_auc > model.smoothed_auc else "smoothed")
    assert model.tier == "model"
    # without signal beyond the cells, the cells win or tie and stay the tier
    plain = _contacts(4000, 4, 0.25)
    _, flat = propensity.score_offer("X", 14, _customers(plain), plain, config)
    assert flat.tier == ("model" if flat.model_auc > flat.smoothed_auc else "smoothed")


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    labels, scores = rng.random(200) < 0.3, rng.random(200).round(1)
    pairs = [(1.0 if s > t else 0.5 if s == t else 0.0) for s, l in zip(scores, labels) if l for t, m in zip(scores, labels) if not m]
    assert propensity.auc(labels, scores) == pytest.approx(np.mean(pairs))


def test_lift_statistics_against_a_hand_computation():
    stats = performance.lift_statistics(120, 1000, 40, 500)
    p1, p0 = 0.12, 0.08
    se = np.sqrt(p1 * (1 - p1) / 1000 + p0 * (1 - p0) / 500)
    assert stats["lift"] == pytest.approx((p1 - p0) / p0)
    assert stats["lift_ci_low"] == pytest.approx((p1 - p0 - 1.959964 * se) / p0)
    pooled = 160 / 1500
    assert stats["min_detectable_lift"] == pytest.approx(2.801585 * np.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 500)) / p0)
    assert performance.lift_statistics(5, 10, 0, 0)["lift"] is None


def test_performance_reports_every_offer_and_arm(nbo_night):
    rows = nbo_night.sql("select offer_id, arm, contacts, responses, control_contacts from marts.nbo_performance")
    contacts = dict(((o, a), (n, r)) for o, a, n, r in nbo_night.sql(
        "select offer_id, arm, count(*), count(*) filter (where is_response) from marts.nbo_offer_contacts where is_window_closed group by all"))
    for offer, arm, n, r, control in rows:
        parts = ("ranked", "random") if arm == "treated" else (arm,)
        assert n == sum(contacts.get((offer, p), (0, 0))[0] for p in parts)
        assert r == sum(contacts.get((offer, p), (0, 0))[1] for p in parts)
        assert control == contacts.get((offer, "control"), (0, 0))[0]


# ------------------------------------------------------------------ landing contract
def test_offer_and_event_rows_break_the_contract_with_reasons(tmp_path):
    raw = tmp_path / "raw"
    header = ["offer_id", "channel", "start_date", "end_date", "expected_volume", "unit_margin", "response_window_days", "max_per_customer"]
    write_csv(raw / "offers" / "offers.csv", header, [
        ("GOOD", "Email", "2026-01-01", "2030-12-31", "1", "100.5", "14", ""),
        ("BADCH", "pigeon", "2026-01-01", "2030-12-31", "1", "100", "14", ""),
        ("BADNUM", "sms", "2026-01-01", "2030-12-31", "many", "100", "14", ""),
        ("BADCOUNT", "sms", "2026-01-01", "2030-12-31", "1", "100", "14", "-1"),
        ("NOWINDOW", "sms", "2026-01-01", "2030-12-31", "1", "100", "", ""),
    ])
    write_csv(raw / "offer_events" / "e.csv", ["event_id", "customer_id", "offer_id", "event_type", "event_at"], [
        ("E1", "C1", "GOOD", "sent", "2026-02-01T10:00:00"), ("E2", "C1", "GOOD", "bounced", "2026-02-01T10:00:00"),
    ])
    with connect(tmp_path / "w.duckdb") as con:
        [offers] = ingest_source(con, OFFERS, raw)
        [events] = ingest_source(con, OFFER_EVENTS, raw)
        loaded = con.execute("select offer_id, channel, cast(unit_margin as double) from raw.offers").fetchall()
        reasons = dict(con.execute("select offer_id, reason from raw.quarantine_offers").fetchall())
        event_reasons = con.execute("select reason from raw.quarantine_offer_events").fetchall()
    assert loaded == [("GOOD", "email", 100.5)]
    assert reasons == {"BADCH": "channel is not one of email, sms, app, call_centre, till, web",
                       "BADNUM": "expected_volume is not a number", "BADCOUNT": "max_per_customer is not a whole number >= 0",
                       "NOWINDOW": "missing response_window_days"}
    assert offers.rows_read == offers.rows_loaded + offers.rows_quarantined + offers.rows_duplicate
    assert event_reasons == [("event_type is not one of sent, opened, clicked, rejected, converted, held_out, complained",)]
    assert events.rows_loaded == 1


def test_a_backfill_of_an_older_night_decides_nothing(nbo_night, tmp_path):
    copy = nbo_night.variant(tmp_path)
    outcome = step.run(copy.config, AS_OF - dt.timedelta(days=1), log=lambda m: None)
    assert outcome.candidates == 0
    assert copy.sql("select distinct as_of_date from marts.next_best_offers") == [(AS_OF,)]


# ------------------------------------------------------------------ the export
def test_the_export_holds_the_marts_rows_of_consenting_customers_and_reruns_byte_identical(nbo_night):
    import csv
    import hashlib
    import json

    from dagster_project.export import export_family
    from dagster_project.export.next_best_offers import NEXT_BEST_OFFERS_FILES

    from .nbo_support import ERASED

    folder = nbo_night.config.export_path
    names = NEXT_BEST_OFFERS_FILES.file_names(AS_OF)
    before = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names.values()}
    with open(folder / names["csv"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = nbo_night.sql(
        "select customer_id, slot, offer_id, arm from marts.next_best_offers n where exists (select 1 from staging.stg_raw__customers c"
        " where c.customer_id = n.customer_id and c.has_marketing_consent) order by customer_id, slot")
    assert [(r["customer_id"], int(r["slot"]), r["offer_id"], r["arm"]) for r in rows] == [tuple(e) for e in expected]
    assert "Z_NOCONSENT" not in {r["customer_id"] for r in rows} and ERASED not in {r["customer_id"] for r in rows}
    assert nbo_night.sql(f"select count(*) from marts.nbo_candidates where customer_id = '{ERASED}'") == [(0,)]
    assert nbo_night.sql(f"select count(*) from raw.offer_events where customer_id = '{ERASED}'") == [(0,)]
    manifest = json.loads((folder / names["manifest"]).read_text())
    assert manifest["schema_version"] == NEXT_BEST_OFFERS_FILES.schema_version and manifest["consent_filtered"]
    step.run(nbo_night.config, AS_OF, log=lambda m: None)  # the night again: the same rows …
    outcome = export_family(NEXT_BEST_OFFERS_FILES, nbo_night.config, AS_OF, "another-run", log=lambda m: None)  # … the same bytes
    assert outcome.files_written == () and not outcome.manifest_written
    assert {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names.values()} == before


def test_the_campaigns_leave_every_other_sample_file_byte_identical(tmp_path):
    import hashlib

    from dagster_project.sample_data import generate_sample

    def hashes(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}

    plain = hashes(generate_sample(tmp_path / "plain", customers=400, seed=9) and tmp_path / "plain")
    with_campaigns = hashes(generate_sample(tmp_path / "campaigns", customers=400, seed=9, campaigns=True) and tmp_path / "campaigns")
    assert {k: v for k, v in with_campaigns.items() if k.split("/")[0] in ("transactions", "nps")} == plain
    assert {"offers/offers.csv"} <= set(with_campaigns) and any(k.startswith("offer_events/") for k in with_campaigns)


def test_the_report_shows_the_decision_per_arm(nbo_night):
    html = (nbo_night.config.publish_path / "report" / f"loyalty_report_{AS_OF.isoformat()}.html").read_text(encoding="utf-8")
    section = html[html.index('id="section-next_best_offer_summary"'):]
    section = section[: section.index("</section>")]
    (total, offers), = nbo_night.sql("select customers, offers_assigned from marts.next_best_offer_summary where arm = 'total'")
    assert f"{total:,d}".replace(",", "\u00a0") in section and f"{offers:,d}".replace(",", "\u00a0") in section
    assert "control group (no offer)" in section and "random eligible offer" in section
