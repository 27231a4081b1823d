"""Charts as PNG: growth over time, new partnerships per month, a ranking of states.

The data come from the database through the same query as `ringwatch changes --by
active-date` (every agency ever listed, with its source start date) and from the poll
log (how many agencies the source listed each day ringwatch looked). Drawing is a
pure function of that data returning a matplotlib Figure, so tests inspect lines,
bars and labels; save_figure writes the PNG. matplotlib is an optional extra and is
imported only here, only when a chart is drawn, with the headless Agg canvas.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from bot.export import write_atomically
from bot.queries import ChangeFilter, query_changes
from bot.reports import last_good_poll_time

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KINDS = ("growth", "monthly", "states")
INSTALL_HINT = "charts need matplotlib: pip install 'ringwatch[charts]'"
SOURCE_NOTE = "Source: Ring Active Agency Map, recorded by ringwatch"

# Sized for a phone: 1080 px wide at 150 dpi, with type that survives being shrunk.
FIGSIZE = (7.2, 5.4)
DPI = 150
ACCENT = "#1f5fa8"
OBSERVED = "#d1495b"


class ChartsUnavailable(Exception):
    """matplotlib is not installed."""


@dataclass(frozen=True)
class GrowthData:
    began: list[tuple[date, int]]  # Active Date → partnerships begun by then (cumulative)
    observed: list[tuple[date, int]]  # day → agencies the source listed at ringwatch's last poll
    as_of: date


@dataclass(frozen=True)
class MonthlyData:
    months: list[tuple[date, int]]  # first of the month → partnerships begun that month
    as_of: date


@dataclass(frozen=True)
class StatesData:
    states: list[tuple[str, int]]  # most first, at most `top`
    total_states: int
    listed: int
    as_of: date


# --- data from the database --------------------------------------------------------------


def _as_of(db: sqlite_utils.Database) -> date:
    last = last_good_poll_time(db)
    return date.fromisoformat(last[:10]) if last else date.today()


def _active_dates(db: sqlite_utils.Database) -> list[date]:
    rows = query_changes(db, ChangeFilter(by="active-date"))
    return sorted(date.fromisoformat(row["active_date"][:10]) for row in rows)


def growth_data(db: sqlite_utils.Database) -> GrowthData:
    per_day = Counter(_active_dates(db))
    began: list[tuple[date, int]] = []
    total = 0
    for day in sorted(per_day):
        total += per_day[day]
        began.append((day, total))
    observed = [
        (date.fromisoformat(row["day"]), row["records"])
        for row in db.query(
            """select substr(finished_at, 1, 10) as day, records from polls
            where id in (select max(id) from polls
                         where outcome in ('baseline', 'ok', 'unchanged') and records is not null
                         group by substr(finished_at, 1, 10))
            order by id"""
        )
    ]
    return GrowthData(began, observed, _as_of(db))


def monthly_data(db: sqlite_utils.Database, since: str | None = None) -> MonthlyData:
    months = Counter(day.replace(day=1) for day in _active_dates(db))
    if since:
        start = date.fromisoformat(since).replace(day=1)
        months = Counter({m: n for m, n in months.items() if m >= start})
    filled: list[tuple[date, int]] = []
    if months:
        month, last = min(months), max(months)
        while month <= last:  # months without a new partnership are zero, not missing
            filled.append((month, months.get(month, 0)))
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return MonthlyData(filled, _as_of(db))


def states_data(db: sqlite_utils.Database, top: int = 20) -> StatesData:
    rows = list(
        db.execute(
            "select coalesce(state, '??'), count(*) as n from agencies where active = 1 "
            "group by 1 order by n desc, 1"
        )
    )
    return StatesData(
        [(state, n) for state, n in rows[:top]], len(rows), sum(n for _, n in rows), _as_of(db)
    )


# --- drawing (pure) ------------------------------------------------------------------------


def _new_figure() -> Figure:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ChartsUnavailable(INSTALL_HINT) from None
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    # Keep the bottom strip free for the source stamp, below the axis labels.
    figure.get_layout_engine().set(rect=(0, 0.035, 1, 0.965))
    FigureCanvasAgg(figure)
    return figure


def _decorate(figure: Figure, ax: Any, title: str, xlabel: str, ylabel: str, as_of: date) -> None:
    ax.set_title(title, fontsize=15, fontweight="bold", loc="left")
    ax.set_xlabel(xlabel, fontsize=12)
    ax.set_ylabel(ylabel, fontsize=12)
    ax.tick_params(labelsize=11)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y" if ylabel else "x", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    figure.text(
        0.01, 0.005, f"{SOURCE_NOTE} · data as of {as_of.isoformat()}",
        fontsize=9, color="#555555", ha="left", va="bottom",
    )  # fmt: skip


def _year_axis(ax: Any, *, by_year: bool = False) -> None:
    from matplotlib import dates as mdates

    if by_year:  # every January labelled with its year, a small tick for each month
        ax.xaxis.set_major_locator(mdates.YearLocator())
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
        ax.xaxis.set_minor_locator(mdates.MonthLocator())
        return
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def growth_chart(data: GrowthData) -> Figure:
    figure = _new_figure()
    ax = figure.add_subplot()
    if data.began:
        days = [day for day, _ in data.began]
        totals = [n for _, n in data.began]
        end = max(data.as_of, days[-1], *(day for day, _ in data.observed))
        if end > days[-1]:  # the count holds until today
            days.append(end)
            totals.append(totals[-1])
        ax.step(days, totals, where="post", color=ACCENT, linewidth=2.5,
                label="partnerships begun (by Active Date)")  # fmt: skip
        ax.annotate(f"{totals[-1]:,}", (days[-1], totals[-1]), xytext=(0, 8),
                    textcoords="offset points", fontsize=12, color=ACCENT, ha="right",
                    va="bottom", fontweight="bold")  # fmt: skip
    if data.observed:
        ax.plot([d for d, _ in data.observed], [n for _, n in data.observed], "o",
                color=OBSERVED, markersize=6, label="listed when ringwatch checked")  # fmt: skip
    ax.set_ylim(0, max([n for _, n in data.began + data.observed], default=1) * 1.12)
    _year_axis(ax)
    if data.began or data.observed:
        ax.legend(loc="lower right", fontsize=11, frameon=False)
    _decorate(figure, ax, "Ring police partnerships over time", "", "partnerships", data.as_of)
    return figure


def monthly_chart(data: MonthlyData) -> Figure:
    figure = _new_figure()
    ax = figure.add_subplot()
    months = [m for m, _ in data.months]
    counts = [n for _, n in data.months]
    # About three weeks wide: months touch without merging, at any zoom.
    ax.bar(months, counts, width=22, color=ACCENT, align="edge", label="new partnerships")
    if counts:
        peak = max(range(len(counts)), key=counts.__getitem__)
        ax.annotate(f"{counts[peak]:,} in {months[peak]:%b %Y}", (months[peak], counts[peak]),
                    xytext=(0, 4), textcoords="offset points", fontsize=11, ha="center",
                    va="bottom")  # fmt: skip
        ax.set_ylim(0, max(counts) * 1.15)
    if len(months) >= 24:
        _year_axis(ax, by_year=True)
        # Start at a January, so the first year is labelled too.
        ax.set_xlim(left=date(months[0].year, 1, 1), right=months[-1] + timedelta(days=40))
    else:
        _year_axis(ax)
    _decorate(figure, ax, "New Ring partnerships per month", "month of Active Date",
              "new partnerships", data.as_of)  # fmt: skip
    return figure


def states_chart(data: StatesData) -> Figure:
    figure = _new_figure()
    ax = figure.add_subplot()
    labels = [state for state, _ in data.states][::-1]  # largest at the top
    counts = [n for _, n in data.states][::-1]
    bars = ax.barh(labels, counts, color=ACCENT, height=0.7)
    ax.bar_label(bars, labels=[f"{n:,}" for n in counts], padding=3, fontsize=10)
    ax.tick_params(axis="y", labelsize=10)
    if counts:
        ax.set_xlim(0, max(counts) * 1.12)
    shown = len(data.states)
    title = "Ring partnerships by state" + (
        f" (top {shown} of {data.total_states})" if shown < data.total_states else ""
    )
    _decorate(figure, ax, title, f"partnerships listed now ({data.listed:,} in all)", "",
              data.as_of)  # fmt: skip
    ax.grid(axis="y", visible=False)
    return figure


def chart(db: sqlite_utils.Database, kind: str) -> Figure:
    """The Figure of one KIND, from the database."""
    if kind == "growth":
        return growth_chart(growth_data(db))
    if kind == "monthly":
        return monthly_chart(monthly_data(db))
    if kind == "states":
        return states_chart(states_data(db))
    raise ValueError(f"unknown chart {kind!r}; one of {', '.join(KINDS)}")


def save_figure(figure: Figure, path: str | os.PathLike[str], fmt: str = "png") -> Path:
    """Write the PNG (or `fmt`: "svg") atomically, so a reader never sees half a file; return
    its path."""
    data = io.BytesIO()
    figure.savefig(data, format=fmt, dpi=DPI, facecolor="white")
    target = Path(path)
    write_atomically(target, data.getvalue())
    return target
