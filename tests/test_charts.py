"""Charts drawn from the polled samples: the figure's data, labels and stamp, and the PNGs."""

from __future__ import annotations

import struct
from collections import Counter
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path

import lxml.etree
import pytest

from bot.charts import (
    chart,
    growth_chart,
    growth_data,
    monthly_chart,
    monthly_data,
    save_figure,
    states_chart,
    states_data,
    top_states,
)
from bot.queries import ChangeFilter, query_changes
from bot.reports import long_date
from bot.store import Store
from tests.support.cli import run_cli

TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def db(sample_config):
    store = Store.open(sample_config.parent / "state" / "ringwatch.db", readonly=True)
    yield store.db
    store.close()


@pytest.fixture(scope="module")
def begun(db) -> list[str]:
    """Active dates of every partnership ever listed: `changes --by active-date`."""
    return sorted(row["active_date"] for row in query_changes(db, ChangeFilter(by="active-date")))


def stamp(figure) -> str:
    return " ".join(text.get_text() for text in figure.texts)


def test_growth_chart_data_and_labels(db, begun):
    figure = growth_chart(growth_data(db))
    ax = figure.axes[0]
    step, ended, observed = ax.get_lines()
    days, totals = list(step.get_xdata()), list(step.get_ydata())
    assert len(begun) == 152  # 151 listed now + the one that ended
    # The line is what was listed: begun by Active Date, less the ending seen today.
    assert max(totals) == 152 and totals[-1] == 151
    assert days[0] == date.fromisoformat(begun[0]) and days[-1] == TODAY
    on_june_1 = sum(1 for d in begun if d <= "2020-06-01")
    assert max(t for d, t in zip(days, totals, strict=True) if d <= date(2020, 6, 1)) == on_june_1
    # The ending is drawn on its own, on the day ringwatch saw it.
    assert list(ended.get_xdata()) == [TODAY] and list(ended.get_ydata()) == [151]
    # Ringwatch's own observations: what the source listed on each day it polled.
    assert list(observed.get_xdata()) == [TODAY]
    assert list(observed.get_ydata()) == [151]
    assert [t.get_text() for t in ax.texts] == ["151 listed now"]  # not 152
    assert ax.get_title(loc="left") == "Ring police partnerships over time"
    assert ax.get_ylabel() == "partnerships"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == [
        "listed: begun (by Active Date) less ended",
        "1 ended (when ringwatch saw it)",
        "listed when ringwatch checked",
    ]
    assert "Source: Ring Active Agency Map" in stamp(figure)
    assert f"data as of {long_date(TODAY.isoformat())}" in stamp(figure)


def test_monthly_chart_bars(db, begun):
    data = monthly_data(db)
    figure = monthly_chart(data)
    ax = figure.axes[0]
    bars = ax.patches
    per_month = Counter(d[:7] for d in begun)
    heights = {f"{m:%Y-%m}": int(bar.get_height()) for (m, _), bar in zip(data.months, bars,
                                                                          strict=True)}  # fmt: skip
    assert sum(heights.values()) == len(begun)
    assert {m: n for m, n in heights.items() if n} == dict(per_month)
    assert heights["2020-06"] == sum(1 for d in begun if d.startswith("2020-06"))
    # Months are contiguous, a quiet month is a zero bar rather than a gap.
    months = [m for m, _ in data.months]
    assert all(b.toordinal() - a.toordinal() in (28, 29, 30, 31) for a, b in pairwise(months))
    assert ax.get_title(loc="left") == "New Ring partnerships per month"
    assert ax.get_xlabel() == "month of Active Date" and ax.get_ylabel() == "new partnerships"
    assert "data as of" in stamp(figure)
    since = monthly_data(db, since="2020-01-01")
    assert since.months[0][0] == date(2020, 1, 1)


def test_states_chart_ranks_states_and_says_what_a_tie_left_out(db):
    data = states_data(db, top=20)
    figure = states_chart(data)
    ax = figure.axes[0]
    widths = [int(bar.get_width()) for bar in ax.patches]
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert len(widths) == 20
    assert widths == sorted(widths)  # drawn bottom-up: the largest state is on top
    listed = dict(db.execute("select state, count(*) from agencies where active = 1 group by 1"))
    assert dict(zip(labels, widths, strict=True)) == {s: listed[s] for s in labels}
    assert widths[-1] == max(listed.values())
    assert ax.get_title(loc="left") == f"Ring partnerships by state (top 20 of {len(listed)})"
    # The 20th state has 3, like others not drawn: the chart says how many.
    with_three = [s for s, n in listed.items() if n == 3]
    left_out = len(with_three) - sum(1 for s in labels if listed[s] == 3)
    assert widths[0] == 3 and left_out == 8
    assert ax.get_xlabel() == "partnerships listed now (151 in all); and 8 more states with 3"
    assert [t.get_text() for t in ax.texts] == [str(w) for w in widths]  # value labels
    assert "data as of" in stamp(figure)


RANKING = [("CA", 8), ("MN", 8), ("TX", 7), ("AL", 3), ("AR", 3), ("ID", 3), ("IL", 3)]


@pytest.mark.parametrize(
    "top, slack, shown, left_out",
    [
        (3, 5, 3, None),  # the cut falls between 7 and 3: no tie
        (2, 5, 2, None),  # CA and MN both shown, TX below the cut
        (1, 5, 2, None),  # a tie of two at the cut: both shown
        (4, 5, 7, None),  # the tie of four fits in the slack: all shown
        (4, 2, 4, (3, 3)),  # it does not: "and 3 more states with 3"
        (10, 5, 7, None),  # fewer states than the top
    ],
)
def test_top_states_never_cut_a_tie_silently(top, slack, shown, left_out):
    ranked, note = top_states(RANKING, top, slack)
    assert ranked == RANKING[:shown] and note == left_out


@pytest.mark.parametrize("kind", ["growth", "monthly", "states"])
def test_the_source_stamp_is_legible_at_phone_width(db, kind):
    """At 360 px wide (a third of the image) the stamp's letters are at least 9 px high,
    and every line of it lies inside the picture."""
    figure = chart(db, kind)
    figure.canvas.draw()
    width_px = figure.get_figwidth() * figure.dpi
    [source] = [text for text in figure.texts if "Source:" in text.get_text()]
    assert source.get_fontsize() * figure.dpi / 72 * 360 / width_px >= 9
    box = source.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= width_px and box.y0 >= 0
    axes_bottom = min(ax.get_tightbbox().y0 for ax in figure.axes)
    assert box.y1 <= axes_bottom  # below the axis labels, never over them


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.parametrize("kind", ["growth", "monthly", "states"])
def test_saved_charts_are_phone_sized_pngs(db, tmp_path, kind):
    out = save_figure(chart(db, kind), tmp_path / "charts" / f"{kind}.png")
    width, height = png_size(out)
    assert 900 <= width <= 1600 and width > height
    assert [p.name for p in out.parent.iterdir()] == [f"{kind}.png"]  # no temp file left


def test_chart_command_writes_the_png(sample_config, tmp_path):
    out = tmp_path / "growth.png"
    result = run_cli("chart", "growth", "--config", str(sample_config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}"
    assert png_size(out)[0] >= 900


def test_chart_command_writes_svg_for_an_svg_name(sample_config, tmp_path):
    out = tmp_path / "states.svg"
    result = run_cli("chart", "states", "--config", str(sample_config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    root = lxml.etree.parse(str(out)).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_chart_rejects_an_unknown_kind(sample_config, tmp_path):
    result = run_cli("chart", "pie", "--config", str(sample_config), "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "'pie' is not one of 'growth', 'monthly', 'states'" in result.stderr


def test_charts_of_an_empty_database_still_draw(tmp_path):
    store = Store.open(tmp_path / "empty.db")
    for kind in ("growth", "monthly", "states"):
        figure = chart(store.db, kind)
        assert figure.axes[0].get_title(loc="left")
    store.close()
