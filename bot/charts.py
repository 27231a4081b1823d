"""Charts as PNG or SVG: growth over time, new partnerships per month, a ranking of states.

The data come from the database through the same query as `ringwatch changes --by
active-date` (every agency ever listed, with its source start date), the endings in the
change log, and the poll log (how many agencies the source listed each day ringwatch
looked). Drawing is a pure function of that data returning a matplotlib Figure, so tests
inspect lines, bars and labels; save_figure writes the file. matplotlib is imported only
here, only when a chart is drawn (it is slow to import), with the headless Agg canvas.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.export import write_atomically
from bot.models import ChangeKind
from bot.queries import (
    ChangeFilter,
    agencies_by_state,
    daily_records,
    last_good_poll_time,
    listed_now,
    query_changes,
)
from bot.reports import long_date

if TYPE_CHECKING:
    import sqlite_utils
    from matplotlib.figure import Figure

KINDS = ("growth", "monthly", "states")
FORMATS = ("png", "svg")
SOURCE_NOTE = "Source: Ring Active Agency Map, recorded by ringwatch"

# Sized for a phone: 1080 px wide at 150 dpi, with type that survives being shrunk.
FIGSIZE = (7.2, 5.4)
DPI = 150
# The source stamp stays legible on a 360 px wide phone screen, a third of the image:
# 13 pt at 150 dpi is 27 px, 9 px on that screen. Two lines, so it never runs off.
SOURCE_FONT_SIZE = 13
SOURCE_STRIP = 0.1  # of the figure's height, kept free for the stamp below the axes
ACCENT = "#1f5fa8"
OBSERVED = "#d1495b"
ENDED = "#333333"
# A states ranking cut through a tie shows the whole tie if that adds at most this many.
TIE_SLACK = 5


@dataclass(frozen=True)
class GrowthData:
    began: list[tuple[date, int]]  # Active Date → partnerships begun by then (cumulative)
    ended: list[tuple[date, int]]  # day detected → partnerships ended by then (cumulative)
    observed: list[tuple[date, int]]  # day → agencies the source listed at ringwatch's last poll
    listed_now: int
    as_of: date

    def listed(self) -> list[tuple[date, int]]:
        """Begun less ended, on every day either count moves."""
        began, ended = dict(self.began), dict(self.ended)
        result, begun_total, ended_total = [], 0, 0
        for day in sorted(began.keys() | ended.keys()):
            begun_total = began.get(day, begun_total)
            ended_total = ended.get(day, ended_total)
            result.append((day, begun_total - ended_total))
        return result


@dataclass(frozen=True)
class MonthlyData:
    months: list[tuple[date, int]]  # first of the month → partnerships begun that month
    as_of: date


@dataclass(frozen=True)
class StatesData:
    states: list[tuple[str, int]]  # most first: the top ones, a tie at the cut included
    total_states: int
    listed: int
    as_of: date
    tie_left_out: tuple[int, int] | None = None  # (states, count each) of a tie cut through


# --- data from the database --------------------------------------------------------------


def _as_of(db: sqlite_utils.Database) -> date:
    last = last_good_poll_time(db)
    return date.fromisoformat(last[:10]) if last else date.today()


def _active_dates(db: sqlite_utils.Database) -> list[date]:
    rows = query_changes(db, ChangeFilter(by="active-date"))
    return sorted(date.fromisoformat(row["active_date"][:10]) for row in rows)


def _cumulative(days: list[date]) -> list[tuple[date, int]]:
    per_day = Counter(days)
    result: list[tuple[date, int]] = []
    total = 0
    for day in sorted(per_day):
        total += per_day[day]
        result.append((day, total))
    return result


def growth_data(db: sqlite_utils.Database) -> GrowthData:
    endings = query_changes(db, ChangeFilter(kinds=(ChangeKind.REMOVED,)))
    ended = _cumulative([date.fromisoformat(row["detected_at"][:10]) for row in endings])
    observed = [(date.fromisoformat(day), records) for day, records in daily_records(db)]
    listed = listed_now(db).agencies
    return GrowthData(_cumulative(_active_dates(db)), ended, observed, listed, _as_of(db))


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


def top_states(
    ranked: list[tuple[str, int]], top: int, slack: int = TIE_SLACK
) -> tuple[list[tuple[str, int]], tuple[int, int] | None]:
    """The first `top` of a ranking (most first) and what a cut through a tie leaves out.

    A tie at the cut is shown whole when that adds at most `slack` states; otherwise the
    chart says how many more have that count, (states left out, count each).
    """
    if len(ranked) <= top or ranked[top][1] != ranked[top - 1][1]:
        return ranked[:top], None
    cut = ranked[top - 1][1]
    tie_end = top + sum(1 for _, n in ranked[top:] if n == cut)
    if tie_end - top <= slack:
        return ranked[:tie_end], None
    return ranked[:top], (tie_end - top, cut)


def states_data(db: sqlite_utils.Database, top: int = 20) -> StatesData:
    rows = agencies_by_state(db)
    shown, left_out = top_states(rows, top)
    return StatesData(shown, len(rows), sum(n for _, n in rows), _as_of(db), left_out)


# --- drawing (pure) ------------------------------------------------------------------------


def _new_figure() -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    # Keep the bottom strip free for the source stamp, below the axis labels.
    figure.get_layout_engine().set(rect=(0, SOURCE_STRIP, 1, 1 - SOURCE_STRIP))
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
        0.01, 0.01, f"{SOURCE_NOTE}\ndata as of {long_date(as_of.isoformat())}",
        fontsize=SOURCE_FONT_SIZE, color="#444444", ha="left", va="bottom", linespacing=1.3,
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


def _hold_until(points: list[tuple[date, int]], end: date) -> tuple[list[date], list[int]]:
    """A step series as x and y lists, its last count held until `end`."""
    days, counts = [d for d, _ in points], [n for _, n in points]
    if days and end > days[-1]:
        days.append(end)
        counts.append(counts[-1])
    return days, counts


def growth_chart(data: GrowthData) -> Figure:
    figure = _new_figure()
    ax = figure.add_subplot()
    listed = data.listed()
    end = max([data.as_of, *(day for day, _ in listed + data.observed)])
    if listed:
        days, totals = _hold_until(listed, end)
        ax.step(days, totals, where="post", color=ACCENT, linewidth=2.5,
                label="listed: begun (by Active Date) less ended")  # fmt: skip
        # The label is the count listed now, which the line's end matches unless the
        # source leaves some Active Dates out.
        ax.annotate(f"{data.listed_now:,} listed now", (days[-1], totals[-1]), xytext=(0, 8),
                    textcoords="offset points", fontsize=12, color=ACCENT, ha="right",
                    va="bottom", fontweight="bold")  # fmt: skip
    if data.ended:  # a marker on the line where each ending took a partnership off it
        on_line = dict(listed)
        days = [day for day, _ in data.ended]
        ax.plot(days, [on_line[day] for day in days], "v", color=ENDED, markersize=9,
                label=f"{data.ended[-1][1]:,} ended (when ringwatch saw it)")  # fmt: skip
    if data.observed:
        ax.plot([d for d, _ in data.observed], [n for _, n in data.observed], "o",
                color=OBSERVED, markersize=6, label="listed when ringwatch checked")  # fmt: skip
    counts = [n for _, n in listed + data.observed]
    ax.set_ylim(0, max([*counts, data.listed_now, 1]) * 1.15)
    _year_axis(ax)
    if listed or data.observed:
        ax.legend(loc="upper left", fontsize=11, frameon=False)
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
    xlabel = f"partnerships listed now ({data.listed:,} in all)"
    if data.tie_left_out:
        states, count = data.tie_left_out
        xlabel += f"; and {states} more {'state' if states == 1 else 'states'} with {count:,}"
    _decorate(figure, ax, title, xlabel, "", data.as_of)
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


def figure_format(path: str | os.PathLike[str]) -> str:
    """png or svg, from a file name (anything but .svg is a PNG)."""
    return "svg" if Path(path).suffix.lower() == ".svg" else "png"


def save_figure(figure: Figure, path: str | os.PathLike[str], fmt: str = "png") -> Path:
    """Write the chart as `fmt` (png or svg) atomically (a reader never sees half a
    file); return its path."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown chart format {fmt!r}; one of {', '.join(FORMATS)}")
    data = io.BytesIO()
    figure.savefig(data, format=fmt, dpi=DPI, facecolor="white",
                   metadata={"Date": None} if fmt == "svg" else None)  # fmt: skip
    target = Path(path)
    write_atomically(target, data.getvalue())
    return target
