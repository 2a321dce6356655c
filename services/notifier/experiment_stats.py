"""The statistics of badge experiments (issue #18): pure functions, no I/O, so that the numbers a
merchant reads can be checked by hand and by simulation (tests/unit/test_experiment_stats.py).

What a shop wants to know is whether a badge variant makes more visitors buy than the control.
Per variant the stream processor counts *visitors* (distinct visitors with at least one
impression) and *conversions* (those of them credited with at least one attributed purchase); the
conversion rate is conversions / visitors. Then:

- **Uplift** of a variant against the control: the relative difference of the rates,
  ``RR - 1`` with ``RR = (a / n1) / (c / n2)`` (a, n1 the variant's conversions and visitors;
  c, n2 the control's). Its 95 % confidence interval is the log risk ratio (Katz) interval,
  ``exp(ln RR ± z · sqrt(1/a - 1/n1 + 1/c - 1/n2)) - 1`` with z = 1.96; when a or c is 0 the
  logarithm is undefined, so 0.5 is added to every cell of the 2x2 table (a + 0.5, n1 + 1,
  c + 0.5, n2 + 1: Haldane's correction) for the estimate and the interval alike, which keeps the
  estimate inside its interval. A ratio, not a difference, because that is the question ("+20 %
  more buyers"), and its log is close to normal already at a few dozen conversions per arm: in
  the unit test 2,000 simulated experiments with a true ratio of 1.2 (5 % vs 6 % at 2,000
  visitors per arm) are covered 94.7 % of the time (95 % within the simulation's own binomial
  error of +-1.9 points), and at the sample below 81.7 % of true +25 % uplifts are detected.
- **Sample-ratio mismatch** (SRM): visitors per variant against the split, chi-square goodness of
  fit (``scipy.stats.chisquare``). p < 0.001 (the usual threshold: a fair split rarely gets there,
  and a broken assignment or lost impressions gets there fast) means the split is off, so the
  comparison is not trusted whatever it shows: a 55/45 split of a 50/50 experiment is flagged
  from about 1,100 visitors on (chi-square = 0.01 n > 10.83), and 2 of 2,000 fair splits were.
- **Sample needed** per variant to detect the experiment's ``minimum_detectable_effect`` (a
  relative uplift) with 80 % power at a two-sided alpha of 0.05, by the normal approximation for
  two proportions: ``(z_0.975 + z_0.8)^2 · (p1(1-p1) + p2(1-p2)) / (p2 - p1)^2``, p1 the control's
  observed rate and ``p2 = p1 · (1 + mde)``. 5 % and +20 % need 8,155 visitors per variant. The
  control has converted nobody yet: the need is unknown, the sample is not sufficient.
- **Verdict**, in this precedence: ``srm`` (the split is off: no conclusion) > ``collecting``
  (some variant has fewer visitors than needed: no winner is named, however good it looks, and
  the text says about how many more visitors per variant) > ``winner`` (some variant's interval
  lies above 0; the one with the highest estimate) > ``control_better`` (every variant's interval
  lies below 0) > ``no_difference``. Waiting for the planned sample is what keeps the 5 % error
  rate honest: stopping the first time an interval clears 0 ("peeking") declares far more false
  winners. The shop's plain badge funnel (``_``, no experiment) has one variant and nothing to
  compare: verdict ``no_experiment``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

ALPHA = 0.05
POWER = 0.8
#: the sample-ratio-mismatch test warns below this p-value
SRM_P = 0.001
Z_CI = NormalDist().inv_cdf(1 - ALPHA / 2)  # 1.959963…
Z_POWER = NormalDist().inv_cdf(POWER)  # 0.841621…

VerdictKind = Literal[
    "srm", "collecting", "winner", "control_better", "no_difference", "no_experiment"
]

METHOD = (
    "Visitors: distinct visitors with at least one badge impression in the variant. Conversions: "
    "those of them credited with at least one purchase of a product they saw in the variant "
    "within the attribution window before it (refunded or cancelled purchases do not count). "
    "Conversion rate = conversions / visitors. Uplift = rate(variant) / rate(control) - 1, with "
    "a 95 % confidence interval by the log risk ratio (Katz) method: exp(ln RR ± 1.96 · "
    "sqrt(1/a - 1/n1 + 1/c - 1/n2)) - 1 (a, n1: the variant's conversions and visitors; c, n2: "
    "the control's); when a or c is 0, 0.5 is added to every cell (a, c + 0.5; n1, n2 + 1). "
    "Sample-ratio mismatch: chi-square goodness of fit of visitors per variant against the "
    "split; a warning when p < 0.001. Sample needed per variant (80 % power, two-sided alpha "
    "0.05): (z_0.975 + z_0.8)^2 · (p1(1-p1) + p2(1-p2)) / (p2 - p1)^2, p1 the control's rate, "
    "p2 = p1 · (1 + minimum detectable effect). No winner is named before every variant has "
    "that many visitors."
)


METHOD_ES = (
    "Visitantes: visitantes distintos con al menos una impresión de la insignia en la variante. "
    "Conversiones: los que tienen al menos una compra atribuida de un producto que vieron en la "
    "variante dentro de la ventana de atribución anterior (las compras reembolsadas o "
    "canceladas no cuentan). Tasa de conversión = conversiones / visitantes. Mejora = "
    "tasa(variante) / tasa(control) - 1, con un intervalo de confianza del 95 % por el método "
    "del logaritmo del riesgo relativo (Katz): exp(ln RR ± 1,96 · sqrt(1/a - 1/n1 + 1/c - "
    "1/n2)) - 1 (a, n1: conversiones y visitantes de la variante; c, n2: los del control); si a "
    "o c es 0, se suma 0,5 a cada celda (a, c + 0,5; n1, n2 + 1). Desajuste de proporciones: "
    "prueba chi-cuadrado de bondad de ajuste de los visitantes por variante frente al reparto; "
    "aviso cuando p < 0,001. Muestra necesaria por variante (potencia del 80 %, alfa bilateral "
    "0,05): (z_0,975 + z_0,8)^2 · (p1(1-p1) + p2(1-p2)) / (p2 - p1)^2, p1 la tasa del control, "
    "p2 = p1 · (1 + efecto mínimo detectable). No se declara ganadora antes de que cada "
    "variante tenga esos visitantes."
)


@dataclass(frozen=True)
class Uplift:
    """Relative uplift of a variant over the control and its 95 % interval (fractions: 0.2 is
    +20 %); ``corrected`` when 0.5 was added to the cells (a zero conversion count)."""

    estimate: float
    low: float
    high: float
    corrected: bool = False

    def as_json(self) -> dict:
        return {
            "estimate": self.estimate,
            "ci95": [self.low, self.high],
            "corrected": self.corrected,
        }


def rate(conversions: int, visitors: int) -> float:
    return conversions / visitors if visitors else 0.0


def uplift(
    conversions: int, visitors: int, control_conversions: int, control_visitors: int
) -> Uplift | None:
    """The variant's uplift over the control (Katz log risk ratio interval); None while either
    side has no visitor (there is nothing to compare)."""
    a, n1, c, n2 = conversions, visitors, control_conversions, control_visitors
    if n1 <= 0 or n2 <= 0:
        return None
    corrected = a == 0 or c == 0
    if corrected:
        a, n1, c, n2 = a + 0.5, n1 + 1, c + 0.5, n2 + 1
    log_rr = math.log((a / n1) / (c / n2))
    se = math.sqrt(max(0.0, 1 / a - 1 / n1 + 1 / c - 1 / n2))
    return Uplift(
        estimate=math.exp(log_rr) - 1,
        low=math.exp(log_rr - Z_CI * se) - 1,
        high=math.exp(log_rr + Z_CI * se) - 1,
        corrected=corrected,
    )


def srm_p_value(visitors: Sequence[int], split: Sequence[float]) -> float | None:
    """p-value of the chi-square goodness-of-fit test of ``visitors`` per variant against the
    ``split`` (any positive weights); None without visitors or with a single variant."""
    total = sum(visitors)
    if total <= 0 or len(visitors) < 2:
        return None
    weights = sum(split)
    expected = [total * s / weights for s in split]
    # imported here: scipy.stats takes ~0.7 s to import, half of the notifier's start, and only
    # results need it
    from scipy import stats

    return float(stats.chisquare(list(visitors), expected).pvalue)


def srm_warning(p_value: float | None) -> bool:
    return p_value is not None and p_value < SRM_P


def required_per_variant(control_rate: float, minimum_detectable_effect: float) -> int | None:
    """Visitors each variant needs to detect a relative uplift of ``minimum_detectable_effect``
    over ``control_rate`` (80 % power, two-sided alpha 0.05); None when the control's rate is 0
    (unknown)."""
    p1 = control_rate
    if p1 <= 0 or minimum_detectable_effect <= 0:
        return None
    p2 = min(p1 * (1 + minimum_detectable_effect), 1.0)
    if p2 == p1:  # a control converting everybody: no uplift is possible
        return None
    n = (Z_CI + Z_POWER) ** 2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2
    return math.ceil(n - 1e-9)


@dataclass(frozen=True)
class Arm:
    """One variant's figures, as the verdict needs them."""

    name: str
    visitors: int
    conversions: int
    uplift: Uplift | None = None  # None for the control


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    text_en: str
    text_es: str
    variant: str | None = None
    #: with ``collecting``: about this many more visitors per variant (None when unknown)
    more_visitors: int | None = None

    def as_json(self) -> dict:
        body: dict = {"kind": self.kind, "text_en": self.text_en, "text_es": self.text_es}
        if self.variant is not None:
            body["variant"] = self.variant
        if self.kind == "collecting":
            body["more_visitors"] = self.more_visitors
        return body


def percent(x: float, lang: str, signed: bool = True) -> str:
    """0.213 -> '+21.3%' (en) / '+21,3 %' (es)."""
    value = x * 100
    text = f"{value:+.1f}" if signed else f"{value:.1f}"
    return text + "%" if lang == "en" else text.replace(".", ",") + " %"


def count(n: int, lang: str) -> str:
    """12345 -> '12,345' (en) / '12.345' (es; 4-digit numbers ungrouped, as Spanish style and
    the browser's Intl do)."""
    text = f"{n:,}"
    if lang == "en":
        return text
    return str(n) if n < 10_000 else text.replace(",", ".")


def _interval(u: Uplift, lang: str) -> str:
    if lang == "en":
        return f"{percent(u.estimate, lang)} (95% CI {percent(u.low, lang)} to {percent(u.high, lang)})"
    return (
        f"{percent(u.estimate, lang)} (IC 95 %: {percent(u.low, lang)} a {percent(u.high, lang)})"
    )


def verdict(
    arms: Sequence[Arm],
    *,
    srm_p: float | None,
    required: int | None,
    split: Sequence[int] | None = None,
) -> Verdict:
    """The plain-language conclusion (see the module docstring for the rules); ``arms[0]`` is
    the control, ``required`` the sample needed per variant (None: unknown)."""
    if len(arms) < 2:
        return Verdict(
            "no_experiment",
            "No experiment: this is the shop's overall badge funnel, with nothing to compare.",
            "Sin experimento: es el embudo general de las insignias de la tienda, sin nada que "
            "comparar.",
        )
    control, others = arms[0], arms[1:]
    if srm_warning(srm_p):
        total = sum(a.visitors for a in arms) or 1
        observed = "/".join(f"{100 * a.visitors / total:.1f}" for a in arms)
        planned = "/".join(str(s) for s in split) if split else "?"
        return Verdict(
            "srm",
            f"The traffic split is off (sample-ratio mismatch, p = {srm_p:.1e}): planned "
            f"{planned}, observed {observed}. The results cannot be trusted; check that every "
            "variant's impressions are recorded.",
            f"El reparto del tráfico no es el previsto (desajuste de proporciones, p = "
            f"{srm_p:.1e}): previsto {planned}, observado {observed.replace('.', ',')}. Los "
            "resultados no son fiables; compruebe que se registran las impresiones de todas las "
            "variantes.",
        )
    if required is None:
        if control.visitors == 0:
            en = "Keep collecting: the control has no visitors yet."
            es = "Siga recogiendo datos: el control aún no tiene visitantes."
        else:
            en = (
                "Keep collecting: nobody in the control has bought yet, so the sample a verdict "
                "needs cannot be estimated."
            )
            es = (
                "Siga recogiendo datos: nadie del control ha comprado aún, así que no se puede "
                "estimar la muestra que necesita un veredicto."
            )
        return Verdict("collecting", en, es)
    short = max(required - a.visitors for a in arms)
    if short > 0:
        return Verdict(
            "collecting",
            f"Keep collecting: about {count(short, 'en')} more visitors per variant before a "
            f"verdict ({count(required, 'en')} per variant are needed).",
            f"Siga recogiendo datos: faltan unos {count(short, 'es')} visitantes más por "
            f"variante antes de un veredicto (se necesitan {count(required, 'es')} por "
            "variante).",
            more_visitors=short,
        )
    better = [a for a in others if a.uplift is not None and a.uplift.low > 0]
    if better:
        best = max(better, key=lambda a: a.uplift.estimate)  # type: ignore[union-attr]
        u = best.uplift
        assert u is not None
        return Verdict(
            "winner",
            f'"{best.name}" converts better than "{control.name}": {_interval(u, "en")}.',
            f"«{best.name}» convierte mejor que «{control.name}»: {_interval(u, 'es')}.",
            variant=best.name,
        )
    if all(a.uplift is not None and a.uplift.high < 0 for a in others):
        return Verdict(
            "control_better",
            f'"{control.name}" converts better than every variant: '
            + "; ".join(f'"{a.name}" {_interval(a.uplift, "en")}' for a in others)  # type: ignore[arg-type]
            + ".",
            f"«{control.name}» convierte mejor que todas las variantes: "
            + "; ".join(f"«{a.name}» {_interval(a.uplift, 'es')}" for a in others)  # type: ignore[arg-type]
            + ".",
            variant=control.name,
        )
    intervals_en = "; ".join(
        f'"{a.name}" {_interval(a.uplift, "en")}' for a in others if a.uplift is not None
    )
    intervals_es = "; ".join(
        f"«{a.name}» {_interval(a.uplift, 'es')}" for a in others if a.uplift is not None
    )
    return Verdict(
        "no_difference",
        f'No variant converts clearly better than "{control.name}": {intervals_en}.',
        f"Ninguna variante convierte claramente mejor que «{control.name}»: {intervals_es}.",
    )
