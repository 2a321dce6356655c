"""The statistics of experiment results (services/notifier/experiment_stats.py) and the pure
parts of building them (services/notifier/experiment_results.py), without Redis.

Checked by hand (the arithmetic is in the comments), against an independent implementation of
the same interval (``scipy.stats.contingency.relative_risk``, Katz's log method) and by
simulation with fixed seeds: the 95 % interval covers the true ratio 95 % of the time (within the
simulation's own binomial error), the sample-size formula gives 80 % power at the minimum
detectable effect, the SRM check flags a 55/45 split and almost never a fair one."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats
from scipy.stats.contingency import relative_risk

from contracts.events import ExperimentFields
from services.notifier import experiment_results as results
from services.notifier import experiment_stats as st
from services.notifier.experiments import ExperimentState

NOW = datetime(2026, 12, 10, 15, 30, tzinfo=UTC)


def tolerance(p: float, n: int, sds: float = 4.0) -> float:
    """How far a proportion over ``n`` simulations may honestly stray from ``p``."""
    return sds * math.sqrt(p * (1 - p) / n)


# --- the uplift interval ---------------------------------------------------------------------


def test_the_interval_is_katz_log_risk_ratio_computed_by_hand() -> None:
    # a/n1 = 30/1000 (variant), c/n2 = 20/1000 (control): RR = 1.5, ln RR = 0.405465
    # SE = sqrt(1/30 - 1/1000 + 1/20 - 1/1000) = sqrt(0.081333) = 0.285190
    # 1.959964 * 0.285190 = 0.558962 -> RR in exp(-0.153497) .. exp(0.964427) = 0.857703 .. 2.623285
    u = st.uplift(30, 1000, 20, 1000)
    assert u is not None and not u.corrected
    assert u.estimate == pytest.approx(0.5)
    assert u.low == pytest.approx(0.857703 - 1, abs=1e-6)
    assert u.high == pytest.approx(2.623285 - 1, abs=1e-6)


def test_the_textbook_trial_gives_its_published_interval() -> None:
    # ACTG 076 (maternal-infant HIV transmission): 13 of 180 on AZT, 40 of 183 on placebo.
    # RR = 0.0722 / 0.2186 = 0.33; SE = sqrt(1/13 - 1/180 + 1/40 - 1/183) = 0.301501;
    # 0.3304 * exp(-+0.590939) = 0.183 .. 0.597, the "0.33 (0.18 to 0.60)" of the lectures
    u = st.uplift(13, 180, 40, 183)
    assert u is not None
    assert (round(u.estimate + 1, 2), round(u.low + 1, 2), round(u.high + 1, 2)) == (
        0.33,
        0.18,
        0.60,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_interval_agrees_with_scipys_relative_risk(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(50):
        n1, n2 = (int(x) for x in rng.integers(50, 5000, size=2))
        a, c = int(rng.integers(1, n1 + 1)), int(rng.integers(1, n2 + 1))
        ours = st.uplift(a, n1, c, n2)
        ref = relative_risk(a, n1, c, n2)
        low, high = ref.confidence_interval(confidence_level=0.95)
        assert ours is not None
        assert ours.estimate + 1 == pytest.approx(ref.relative_risk, rel=1e-12)
        assert (ours.low + 1, ours.high + 1) == (
            pytest.approx(low, rel=1e-9),
            pytest.approx(high, rel=1e-9),
        )


def test_the_interval_covers_the_true_ratio_95_percent_of_the_time() -> None:
    # 2,000 experiments with 5 % vs 6 % (a true uplift of +20 %) at 2,000 visitors per arm
    rng = np.random.default_rng(18)
    sims, n, p_control, true_uplift = 2000, 2000, 0.05, 0.2
    controls = rng.binomial(n, p_control, size=sims)
    variants = rng.binomial(n, p_control * (1 + true_uplift), size=sims)
    covered = 0
    for a, c in zip(variants, controls, strict=True):
        u = st.uplift(int(a), n, int(c), n)
        assert u is not None
        covered += u.low <= true_uplift <= u.high
    coverage = covered / sims
    assert abs(coverage - 0.95) <= tolerance(0.95, sims), coverage


def test_a_zero_conversion_cell_gets_half_a_conversion_in_every_cell() -> None:
    # a = 0: (0.5/101) / (10.5/101) = 0.047619; SE = sqrt(2 - 1/101 + 1/10.5 - 1/101) = 1.4254
    u = st.uplift(0, 100, 10, 100)
    assert u is not None and u.corrected
    assert u.estimate + 1 == pytest.approx(0.5 / 10.5)
    se = math.sqrt(1 / 0.5 - 1 / 101 + 1 / 10.5 - 1 / 101)
    assert u.low + 1 == pytest.approx(0.5 / 10.5 * math.exp(-st.Z_CI * se))
    assert u.high + 1 == pytest.approx(0.5 / 10.5 * math.exp(st.Z_CI * se))
    assert -1 < u.low < u.estimate < u.high < 0  # finite, and the estimate inside its interval
    # the control at zero, and both: finite intervals, both at zero centred on no difference
    both = st.uplift(0, 100, 0, 100)
    assert both is not None and both.estimate == 0 and both.low < 0 < both.high
    up = st.uplift(5, 100, 0, 100)
    assert up is not None and math.isfinite(up.high) and up.low < up.estimate < up.high
    # no visitors on a side: nothing to compare
    assert st.uplift(0, 0, 3, 10) is None and st.uplift(3, 10, 0, 0) is None


# --- sample-ratio mismatch -----------------------------------------------------------------------


def test_srm_flags_a_55_45_split_of_a_50_50_experiment() -> None:
    # chi2 = 2 * 500^2 / 5000 = 100 with 1 degree of freedom: p ~ 1.5e-23
    p = st.srm_p_value([5500, 4500], [50, 50])
    assert p == pytest.approx(stats.chi2.sf(100, 1))
    assert st.srm_warning(p)
    # the same proportions on 200 visitors are not evidence of anything
    assert not st.srm_warning(st.srm_p_value([110, 90], [50, 50]))


def test_srm_almost_never_flags_a_fair_split() -> None:
    rng = np.random.default_rng(7)
    sims, n = 2000, 10_000
    split = [34, 33, 33]
    flagged = sum(
        st.srm_warning(st.srm_p_value(list(rng.multinomial(n, [s / 100 for s in split])), split))
        for _ in range(sims)
    )
    # p < 0.001 by chance: about 2 in 2,000
    assert flagged / sims <= st.SRM_P + tolerance(st.SRM_P, sims), flagged


def test_srm_needs_visitors_and_two_variants() -> None:
    assert st.srm_p_value([0, 0], [50, 50]) is None
    assert st.srm_p_value([100], [100]) is None
    assert not st.srm_warning(None)


# --- sample size -------------------------------------------------------------------------------


def test_the_required_sample_is_the_two_proportion_formula() -> None:
    # p1 = 5 %, +20 % -> p2 = 6 %: (1.959964 + 0.841621)^2 * (0.0475 + 0.0564) / 0.01^2
    # = 7.848879 * 1039 = 8154.99 -> 8155
    assert st.required_per_variant(0.05, 0.2) == 8155
    assert st.required_per_variant(0.0, 0.2) is None  # no conversions in the control: unknown
    assert st.required_per_variant(1.0, 0.2) is None  # nothing above 100 %
    assert st.required_per_variant(0.10, 0.5) < st.required_per_variant(0.10, 0.2)


def test_the_required_sample_gives_80_percent_power_at_the_minimum_effect() -> None:
    # at exactly the required sample and a true uplift of the minimum detectable effect, the
    # interval's lower bound clears 0 in about 80 % of experiments
    rng = np.random.default_rng(80)
    sims, p1, mde = 1000, 0.08, 0.25
    n = st.required_per_variant(p1, mde)
    assert n is not None
    controls = rng.binomial(n, p1, size=sims)
    variants = rng.binomial(n, p1 * (1 + mde), size=sims)
    detected = sum(
        st.uplift(int(a), n, int(c), n).low > 0  # type: ignore[union-attr]
        for a, c in zip(variants, controls, strict=True)
    )
    # the formula is for the difference of proportions, the interval for their ratio: they
    # agree to a couple of points
    assert abs(detected / sims - st.POWER) <= tolerance(st.POWER, sims) + 0.02, detected


# --- the verdict -------------------------------------------------------------------------------


def arms(*figures: tuple[str, int, int]) -> list[st.Arm]:
    control = figures[0]
    out = [st.Arm(*control)]
    for name, n, c in figures[1:]:
        out.append(st.Arm(name, n, c, st.uplift(c, n, control[2], control[1])))
    return out


def test_the_verdict_refuses_a_winner_before_the_sample_suffices() -> None:
    # friends looks far better, but 1,000 visitors per variant are not the 8,155 needed
    a = arms(("control", 1000, 50), ("friends", 1000, 90))
    assert a[1].uplift is not None and a[1].uplift.low > 0
    v = st.verdict(a, srm_p=0.5, required=8155, split=[50, 50])
    assert v.kind == "collecting" and v.variant is None and v.more_visitors == 7155
    assert v.text_en == (
        "Keep collecting: about 7,155 more visitors per variant before a verdict "
        "(8,155 per variant are needed)."
    )
    assert v.text_es == (
        "Siga recogiendo datos: faltan unos 7155 visitantes más por variante antes de un "
        "veredicto (se necesitan 8155 por variante)."
    )
    unknown = st.verdict(arms(("control", 500, 0), ("friends", 500, 3)), srm_p=0.5, required=None)
    assert unknown.kind == "collecting" and "nobody in the control has bought" in unknown.text_en


def test_the_verdict_names_the_best_variant_whose_interval_clears_zero() -> None:
    a = arms(("control", 10_000, 500), ("friends", 10_000, 620), ("counts", 10_000, 505))
    v = st.verdict(a, srm_p=0.9, required=8155, split=[34, 33, 33])
    assert (v.kind, v.variant) == ("winner", "friends")
    u = a[1].uplift
    assert u is not None
    assert v.text_en == (
        f'"friends" converts better than "control": +24.0% (95% CI '
        f"{st.percent(u.low, 'en')} to {st.percent(u.high, 'en')})."
    )
    assert v.text_es.startswith("«friends» convierte mejor que «control»: +24,0 % (IC 95 %: +")


def test_the_other_verdicts() -> None:
    worse = arms(("control", 10_000, 600), ("friends", 10_000, 480))
    v = st.verdict(worse, srm_p=0.9, required=5000)
    assert (v.kind, v.variant) == ("control_better", "control")
    assert v.text_en.startswith('"control" converts better than every variant: "friends" -20.0%')
    same = arms(("control", 10_000, 500), ("friends", 10_000, 510), ("counts", 10_000, 420))
    v = st.verdict(same, srm_p=0.9, required=8155)
    assert v.kind == "no_difference" and v.variant is None  # counts is worse, friends is not
    assert v.text_en.startswith(
        'No variant converts clearly better than "control": "friends" +2.0%'
    )
    # a split off outranks everything, even a clear winner
    v = st.verdict(
        arms(("control", 11_000, 500), ("friends", 9_000, 700)),
        srm_p=1e-20,
        required=8155,
        split=[50, 50],
    )
    assert v.kind == "srm" and "planned 50/50, observed 55.0/45.0" in v.text_en
    assert "previsto 50/50, observado 55,0/45,0" in v.text_es
    # one variant: the plain badge funnel
    assert st.verdict([st.Arm("badge", 100, 5)], srm_p=None, required=None).kind == "no_experiment"


# --- building the results ------------------------------------------------------------------------


def state(split: list[int], starts_at: datetime) -> ExperimentState:
    fields = ExperimentFields(
        experiment_id="exp-1",
        title="Friends?",
        products=["p1", "p2"],
        variants=[{"name": "control", "badge": "none"}, {"name": "friends"}],
        split=split,
        minimum_detectable_effect=0.2,
        starts_at=starts_at,
    )
    return ExperimentState(fields, starts_at)


def test_the_series_has_a_point_per_utc_day_and_at_most_90() -> None:
    days = results.points(NOW - timedelta(days=2, hours=20), NOW)
    assert [p.day for p in days] == ["2026-12-07", "2026-12-08", "2026-12-09", "2026-12-10"]
    # each day counts up to its last millisecond, the last everything
    assert days[0].until_ms == int(datetime(2026, 12, 8, tzinfo=UTC).timestamp() * 1000) - 1
    assert days[-1].until_ms is None
    long = results.points(NOW - timedelta(days=400), NOW)
    assert len(long) <= results.MAX_POINTS and long[-1].day == "2026-12-10"
    assert len(results.points(NOW + timedelta(days=3), NOW)) == 1  # a start in the future


def test_results_are_built_from_the_keys_figures() -> None:
    s = state([50, 50], NOW - timedelta(days=1))
    series = results.points(s.fields.starts_at, NOW)
    snapshot = results.Snapshot(
        funnel={
            "control|p1|imp": "600",
            "control|p2|imp": "400",
            "control|p1|pur": "30",
            "friends|p1|imp": "700",
            "friends|p1|clk": "70",
            "friends|p1|dis": "7",
            "friends|p2|imp": "310",
            "friends|p2|pur": "45",
            "friends|p1|pur": "5",
            "friends|p3|bogus": "1",
        },  # fmt: skip
        visitors={"control": 900, "friends": 910},
        conversions={"control": 27, "friends": 44},
        series=[
            {"control": (400, 10), "friends": (420, 20)},
            {"control": (900, 27), "friends": (910, 44)},
        ],
    )
    body = results.build(s, snapshot, series, NOW)
    control, friends = body["variants"]
    assert control == {
        "name": "control", "badge": "none", "elements": None, "split": 50, "visitors": 900,
        "impressions": 1000, "clicks": 0, "dismissals": 0, "purchases": 30, "conversions": 27,
        "conversion_rate": 0.03, "click_rate": 0.0, "uplift": None,
    }  # fmt: skip
    assert (friends["impressions"], friends["clicks"], friends["dismissals"]) == (1010, 70, 7)
    assert (friends["purchases"], friends["conversion_rate"]) == (50, 44 / 910)
    u = st.uplift(44, 910, 27, 900)
    assert u is not None and friends["uplift"] == u.as_json()
    assert body["srm_p_value"] == pytest.approx(stats.chisquare([900, 910]).pvalue)
    assert body["srm_warning"] is False and body["control"] == "control"
    assert body["sample"] == {
        "required_per_variant": st.required_per_variant(0.03, 0.2),
        "sufficient": False,
    }
    assert body["verdict"]["kind"] == "collecting" and body["method"] == st.METHOD
    assert [p["product_id"] for p in body["products"]] == ["p1", "p2"]  # by impressions
    assert body["products"][0]["variants"][1] == {
        "name": "friends", "impressions": 700, "clicks": 70, "dismissals": 7, "purchases": 5,
    }  # fmt: skip
    assert body["series"][0] == {
        "date": "2026-12-09",
        "variants": [
            {"name": "control", "visitors": 400, "conversions": 10, "conversion_rate": 0.025},
            {"name": "friends", "visitors": 420, "conversions": 20, "conversion_rate": 20 / 420},
        ],
    }
    # the CSV has the same numbers, read back as the same floats
    rows = list(csv.DictReader(io.StringIO(results.to_csv(body))))
    by = {(r["section"], r["date"], r["product_id"], r["variant"]): r for r in rows}
    row = by[("variant", "", "", "friends")]
    assert float(row["conversion_rate"]) == friends["conversion_rate"]
    assert [float(row[k]) for k in ("uplift_estimate", "uplift_ci95_low", "uplift_ci95_high")] == [
        u.estimate,
        u.low,
        u.high,
    ]
    assert by[("variant", "", "", "control")]["uplift_estimate"] == ""
    assert by[("product", "", "p2", "friends")]["purchases"] == "45"
    assert by[("series", "2026-12-10", "", "control")]["visitors"] == "900"
    assert len(rows) == 2 + 2 * 2 + 2 * 2


def test_the_plain_badge_funnel_has_one_variant_and_nothing_to_compare() -> None:
    series = results.points(results.series_start(None, NOW), NOW)
    assert len(series) == results.FUNNEL_DAYS
    snapshot = results.Snapshot(
        funnel={"badge|p1|imp": "40", "badge|p1|clk": "4"},
        visitors={"badge": 30},
        conversions={"badge": 0},
        series=[{"badge": (30, 0)}] * len(series),
    )
    body = results.build(None, snapshot, series, NOW)
    (badge,) = body["variants"]
    assert (badge["name"], badge["visitors"], badge["impressions"], badge["clicks"]) == (
        "badge", 30, 40, 4,
    )  # fmt: skip
    assert (badge["conversion_rate"], badge["uplift"]) == (0.0, None)
    assert body["experiment_id"] == "_" and body["srm_warning"] is False
    assert body["srm_p_value"] is None and body["sample"]["required_per_variant"] is None
    assert body["verdict"]["kind"] == "no_experiment"
