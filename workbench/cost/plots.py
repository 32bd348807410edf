"""Plots of the cost models. Each takes an Axes and returns it, so a notebook calls it once
directly (a headless run renders it) and again from a widget."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from workbench.cost.deployment import BreakEven, break_even
from workbench.cost.hosting import HostingOption
from workbench.cost.prices import ApiPrice


def plot_validation(ax: Axes, table: pd.DataFrame, target: float = 0.25, title: str = "") -> Axes:
    """Predicted against measured seconds (log-log) with the +-target band.

    ``table`` comes from :func:`validation_table` with a ``role`` column ("fit", "held out", ...);
    prefills are circles, decode steps squares, points used for fitting hollow.
    """
    for index, ((phase, role), part) in enumerate(table.groupby(["phase", "role"])):
        color = f"C{index}"
        ax.scatter(
            part.measured_s,
            part.predicted_s,
            marker="o" if phase == "prefill" else "s",
            edgecolors=color,
            facecolors="none" if role == "fit" else color,
            label=f"{phase}, {role}",
        )
    low, high = (
        table[["measured_s", "predicted_s"]].min().min() / 1.5,
        table[["measured_s", "predicted_s"]].max().max() * 1.5,
    )
    line = np.array([low, high])
    ax.plot(line, line, "k-", lw=1)
    ax.fill_between(line, line * (1 - target), line * (1 + target), color="0.85", label=f"within {target:.0%}")
    ax.set(xscale="log", yscale="log", xlabel="measured s", ylabel="roofline s", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return ax


def plot_validations(axes: Sequence[Axes], validation: pd.DataFrame, threads: Sequence[int]) -> Sequence[Axes]:
    """:func:`plot_validation` of this notebook's timings at each thread count, one Axes each."""
    for ax, count in zip(axes, threads, strict=True):
        part = validation[validation.source == f"this notebook, {count} thread(s)"]
        plot_validation(ax, part, title=f"roofline (predicted) vs measured, {count} thread(s)")
    return axes


def plot_break_even(
    ax: Axes, result: BreakEven, api_label: str, hosting_label: str, volume: float | None = None
) -> Axes:
    """Monthly cost against monthly requests: the API line, the self-hosting steps, the crossing."""
    ax.plot(result.volumes, result.api_usd, label=api_label)
    ax.step(result.volumes, result.self_hosted_usd, where="post", label=hosting_label)
    if np.isfinite(result.volume):
        ax.axvline(result.volume, color="k", ls=":", lw=1)
        ax.annotate(
            f"break-even\n{result.volume:,.0f}/month", (result.volume, ax.get_ylim()[1] * 0.85), fontsize=7, ha="left"
        )
    if volume is not None:
        ax.axvline(volume, color="C3", lw=1, label=f"your volume {volume:,.0f}")
    ax.set(xlabel="requests per month", ylabel="US$ per month")
    ax.legend(fontsize=7)
    return ax


def plot_pareto(
    ax: Axes, table: pd.DataFrame, quality: str, cost: str, group: str = "stage", label: str = "label"
) -> Axes:
    """Quality against cost, one colour per ``group``; the Pareto front (column ``pareto``) joined."""
    for index, (name, part) in enumerate(table.groupby(group, sort=False)):
        ax.scatter(part[cost], part[quality], color=f"C{index}", label=name, s=18)
    front = table[table.pareto].sort_values(cost)
    ax.plot(front[cost], front[quality], "k--", lw=1, label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(row[label], (row[cost], row[quality]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set(xscale="log", xlabel=cost, ylabel=quality)
    ax.legend(fontsize=7)
    return ax


def plot_api_vs_hosting(
    ax: Axes,
    api: ApiPrice,
    input_tokens: float,
    output_tokens: float,
    option: HostingOption,
    n: int,
    volume: float,
    utilisation: float = 1.0,
) -> Axes:
    """Monthly cost of one API against one self-hosting option at N samples per request, with the break-even volume.

    Args:
        ax: where to draw.
        api: the API price (it bills N answers and the prompt once).
        input_tokens: prompt tokens per request.
        output_tokens: tokens per answer.
        option: the self-hosting option.
        n: samples per request.
        volume: requests per month, marked on the plot.
        utilisation: average share of the machine's throughput the traffic fills.
    """
    api_usd = api.cost(input_tokens, n * output_tokens)
    result = break_even(
        api_usd,
        option.usd_per_hour,
        option.requests_per_s(n),
        utilisation,
        volumes=np.linspace(0, 3 * max(volume, 1.0), 200),
    )
    plot_break_even(ax, result, f"{api.provider}/{api.model} ({api.price_date})", option.name, volume)
    # Escaped dollar signs: a bare pair of them would start matplotlib's math mode.
    ax.set_title(
        f"N={n}: API \\${1000 * api_usd:.4f} vs "
        f"self-hosted \\${1000 * option.usd_per_request(n, utilisation):.4f} per 1,000 requests",
        fontsize=9,
    )
    return ax


def plot_cost_vs_samples(
    ax: Axes,
    api: ApiPrice,
    input_tokens: float,
    output_tokens: float,
    option: HostingOption,
    n: int | None = None,
    utilisation: float = 1.0,
    ns: Sequence[int] | None = None,
) -> Axes:
    """Cost per 1,000 requests against the samples per request N, for one API and one machine.

    Args:
        ax: where to draw.
        api, input_tokens, output_tokens, option, utilisation: as for :func:`plot_api_vs_hosting`.
        n: an N to mark.
        ns: N values to draw; default the option's timed ones.
    """
    ns = sorted(ns or option.seconds_per_request)
    ax.plot(ns, [1000 * api.cost(input_tokens, k * output_tokens) for k in ns], "o-", label=f"{api.model}")
    ax.plot(ns, [1000 * option.usd_per_request(k, utilisation) for k in ns], "s-", label=option.name)
    if n is not None:
        ax.axvline(n, color="C3", lw=1)
    ax.set(yscale="log", xlabel="samples per request N", ylabel="US$ per 1,000 requests")
    ax.set_xscale("log", base=2)
    ax.set_title(f"utilisation {utilisation:.0%}", fontsize=9)
    ax.legend(fontsize=7)
    return ax


def plot_scorecard(ax: Axes, card: pd.DataFrame, ranking: pd.Series | None = None) -> Axes:
    """Stages on serving cost (x, measured) against generalization (y); marker area grows with the
    evaluation cost, Pareto-optimal stages (column ``pareto``) are ringed, the top-ranked one starred."""
    area = 40 + 360 * card.evaluation_usd / card.evaluation_usd.max()
    ax.scatter(card.serving_usd_per_1000, card.generalization, s=area, alpha=0.6, c=[f"C{i}" for i in range(len(card))])
    if "pareto" in card:
        front = card[card.pareto]
        ax.scatter(
            front.serving_usd_per_1000,
            front.generalization,
            s=area[card.pareto] + 120,
            facecolors="none",
            edgecolors="black",
            label="Pareto-optimal",
        )
    if ranking is not None:
        best = ranking.idxmax()
        ax.scatter(
            [card.serving_usd_per_1000[best]],
            [card.generalization[best]],
            marker="*",
            s=220,
            color="gold",
            edgecolors="black",
            zorder=3,
            label=f"best weighted: {best}",
        )
    for stage, row in card.iterrows():
        ax.annotate(
            f"{stage}\neval ${row.evaluation_usd:,.0f}",
            (row.serving_usd_per_1000, row.generalization),
            fontsize=7,
            xytext=(5, 3),
            textcoords="offset points",
        )
    ax.axhline(0, color="grey", lw=1, ls=":")
    ax.set_xlabel("serving US$ per 1,000 requests, this machine (measured)")
    ax.set_ylabel("skill on unseen data (0 = constant prior)")
    ax.legend(fontsize=7)
    return ax


def plot_generalization_drop(ax: Axes, table: pd.DataFrame, in_domain_set: str, metric: str = "rmse") -> Axes:
    """In-domain against out-of-domain scores per stage, with their bootstrap intervals as error bars.

    Args:
        ax: where to draw.
        table: rows of :func:`workbench.cost.generalization.drop_table` with columns ``stage``,
            ``in_domain_set``, ``out_of_domain_set``, ``metric``, ``in_domain`` / ``out_of_domain`` and
            their ``_low`` / ``_high`` interval ends (the generalization table of notebook 07).
        in_domain_set: which in-domain set's rows to draw.
        metric: which metric's rows to draw.
    """
    part = table[(table.in_domain_set == in_domain_set) & (table.metric == metric)].set_index("stage")
    x = np.arange(len(part))
    for offset, side, color in ((-0.2, "in_domain", "#4c72b0"), (0.2, "out_of_domain", "#dd8452")):
        errors = np.abs(part[[f"{side}_low", f"{side}_high"]].to_numpy().T - part[side].to_numpy())
        label = in_domain_set if side == "in_domain" else part.out_of_domain_set.iloc[0]
        ax.bar(x + offset, part[side], 0.4, yerr=np.nan_to_num(errors), color=color, capsize=3, label=label)
    ax.set_xticks(x, part.index, fontsize=7, rotation=20)
    ax.set_ylabel(f"{metric.upper()} (measured), 95% bootstrap CI")
    ax.set_title(f"{in_domain_set} -> {part.out_of_domain_set.iloc[0]}", fontsize=9)
    ax.legend(fontsize=7)
    return ax


def plot_weighted_ranking(ax: Axes, ranking: pd.Series) -> Axes:
    """Horizontal bars of the weighted scores of :func:`workbench.cost.scorecard.weighted_ranking`, the best in gold."""
    ordered = ranking.sort_values()
    ax.barh(
        ordered.index, ordered.values, color=["gold" if stage == ranking.idxmax() else "C0" for stage in ordered.index]
    )
    ax.set_xlabel("weighted score (1 = best on every weighted axis)")
    return ax


def plot_half_width_fit(ax: Axes, half_widths: pd.DataFrame, scaling, max_items: int) -> Axes:
    """Bootstrap half-widths against the number of items, and the fitted ``scale / sqrt(n)`` up to ``max_items``.

    Args:
        ax: where to draw.
        half_widths: columns ``items`` and ``half_width``
            (from :func:`workbench.cost.evaluation_cost.bootstrap_scaling`).
        scaling: the fitted :class:`workbench.cost.evaluation_cost.BootstrapScaling`.
        max_items: the right end of the fitted curve.
    """
    ax.plot(half_widths["items"], half_widths.half_width, "o", label="bootstrap half-width")
    items = np.geomspace(half_widths["items"].min(), max(half_widths["items"].max(), max_items), 50)
    ax.plot(
        items,
        scaling.half_width(items),
        "-",
        label=f"{scaling.scale:.2f} / sqrt(n) (free exponent {scaling.exponent:.2f})",
    )
    ax.set(xscale="log", yscale="log", xlabel="labelled items", ylabel="95% CI half-width")
    ax.legend(fontsize=7)
    return ax


def plot_adjusted_pareto(ax: Axes, table: pd.DataFrame) -> Axes:
    """Accuracy against US$ per 1,000 *correct* answers of stages and APIs (:func:`~workbench.cost.quality_adjusted.
    adjusted_costs`), one colour per kind, the Pareto front joined; free or never-correct options are left out
    (a log axis has no place for them) and listed in the title."""
    cost = table.usd_per_1000_correct
    shown = table[np.isfinite(cost) & (cost > 0)]
    ax = plot_pareto(ax, shown, "accuracy", "usd_per_1000_correct", group="kind", label="name")
    left_out = ", ".join(table.name[~table.name.isin(shown.name)])
    ax.set_xlabel("US$ per 1,000 correct answers (stages: measured here; APIs: dated price / stated accuracy)")
    ax.set_title(f"quality-adjusted cost; not drawn: {left_out or 'none'}", fontsize=8)
    return ax
