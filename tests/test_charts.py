"""Charts drawn from the polled samples: the figure's data, labels and stamp, and the PNGs."""

from __future__ import annotations

import struct
from collections import Counter
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path

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
)
from bot.queries import ChangeFilter, query_changes
from bot.store import Store
from tests.support.cli import run_cli

pytest.importorskip("matplotlib")

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
    step, observed = ax.get_lines()
    days, totals = list(step.get_xdata()), list(step.get_ydata())
    assert len(begun) == 152  # 151 listed now + the one that ended
    assert totals[-1] == len(begun)
    assert totals == sorted(totals)  # cumulative
    assert days[0] == date.fromisoformat(begun[0])
    # The count at the last new Active Date holds until the day of the last poll.
    assert days[-1] == TODAY and totals[-2] == totals[-1]
    on_june_1 = sum(1 for d in begun if d <= "2020-06-01")
    assert max(t for d, t in zip(days, totals, strict=True) if d <= date(2020, 6, 1)) == on_june_1
    # Ringwatch's own observations: what the source listed on each day it polled.
    assert list(observed.get_xdata()) == [TODAY]
    assert list(observed.get_ydata()) == [151]
    assert ax.get_title(loc="left") == "Ring police partnerships over time"
    assert ax.get_ylabel() == "partnerships"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["partnerships begun (by Active Date)", "listed when ringwatch checked"]
    assert "Source: Ring Active Agency Map" in stamp(figure)
    assert f"data as of {TODAY.isoformat()}" in stamp(figure)


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


def test_states_chart_ranks_states(db):
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
    assert ax.get_xlabel() == "partnerships listed now (151 in all)"
    assert [t.get_text() for t in ax.texts] == [str(w) for w in widths]  # value labels
    assert "data as of" in stamp(figure)


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


def test_chart_without_matplotlib_says_how_to_install_it(sample_config, tmp_path):
    # An environment where `import matplotlib` fails, as it does without the extra.
    blocker = tmp_path / "blocked" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    out = tmp_path / "growth.png"
    result = run_cli("chart", "growth", "--config", str(sample_config), "--out", str(out),
                     env={"PYTHONPATH": str(blocker.parent)})  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'ringwatch[charts]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


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
