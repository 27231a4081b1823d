"""Map cards: the PNG every alert and digest carries (1200 × 675, under 300 KB), its alt
text (what the map shows, in words), and how cards are stored and reused; drawn from the
samples' real change log and from hostile names."""

from __future__ import annotations

import gc
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils
from PIL import Image

from bot.boundaries import states
from bot.cards import (
    MAX_ALT,
    MAX_BYTES,
    Point,
    alert_card_data,
    alt_text,
    digest_card_data,
    draw_card,
    make_card,
    prune_cards,
    remove_cards,
    where_in_state,
)
from bot.models import MessageKind, OutboxMessage
from bot.queries import changes_by_id
from bot.store import Store
from tests.support.cli import REPO, cli_env, database


def decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def change_id(db: sqlite_utils.Database, name: str) -> int:
    return db.execute("select id from changes where name = ?", [name]).fetchone()[0]


@pytest.fixture(scope="module")
def db(sample_config: Path) -> sqlite_utils.Database:
    return sqlite_utils.Database(database(sample_config))


def test_an_alert_card_is_the_agencys_state_in_1200_by_675_under_300_kb(db):
    row = changes_by_id(db, [change_id(db, "Crystal Police Department")])[0]
    data = alert_card_data(db, row)
    png = draw_card(data)
    image = decoded(png)
    assert (image.format, image.size) == ("PNG", (1200, 675))
    assert len(png) < MAX_BYTES
    assert data.state == "MN" and data.title == "Crystal Police Department"
    # The context carries the report's numbers for Minnesota, never a guess.
    listed = db.execute("select count(*) from agencies where active and state = 'MN'").fetchone()[0]
    assert data.listed == listed
    assert data.context.startswith(f"Minnesota now lists {listed} partnerships;")
    assert len(data.partners) == listed  # every partner of the state is a dot


def test_a_drawn_card_frees_its_figure_without_waiting_for_the_garbage_collector(db):
    # `run` draws cards for months: a figure (its renderer holds a 3 MB pixel buffer)
    # left for a full collection piled up in the month-long soak's memory.
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.figure import Figure

    data = alert_card_data(db, changes_by_id(db, [change_id(db, "Crystal Police Department")])[0])
    draw_card(data)  # matplotlib's own first-use caches
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            draw_card(data)
        alive = [o for o in gc.get_objects() if isinstance(o, Figure | RendererAgg)]
    finally:
        gc.enable()
    assert alive == []


def test_the_alt_text_names_the_agency_its_state_county_place_and_the_count(db):
    row = changes_by_id(db, [change_id(db, "Crystal Police Department")])[0]
    data = alert_card_data(db, row)
    alt = alt_text(data)
    assert 0 < len(alt) < MAX_ALT
    assert "Crystal Police Department" in alt
    assert "Map of Minnesota" in alt
    assert f"({data.listed} listed)" in alt
    assert "Hennepin County" in alt
    assert "of the state" in alt
    assert "new partnership" in alt


def test_where_in_the_state_is_said_in_words():
    minnesota = states()["MN"]
    west, south, east, north = minnesota.bbox
    assert where_in_state(Point(east - 0.1, south + 0.1), minnesota) == (
        "in the south-east of the state"
    )
    assert where_in_state(Point((west + east) / 2, (south + north) / 2), minnesota) == (
        "in the centre of the state"
    )
    assert where_in_state(Point((west + east) / 2, north - 0.1), minnesota) == (
        "in the north of the state"
    )


def test_a_digest_card_is_the_whole_country_with_every_agency_marked(db):
    ids = [row[0] for row in db.execute("select id from changes where kind != 'baseline'")]
    data = digest_card_data(db, changes_by_id(db, ids))
    png = draw_card(data)
    assert decoded(png).size == (1200, 675) and len(png) < MAX_BYTES
    assert data.state is None and len(data.marked) == len(ids)
    assert {marked.state for marked in data.marked} >= {"AK", "MN"}  # Alaska: an inset
    alt = alt_text(data)
    assert len(alt) < MAX_ALT
    assert alt.startswith("Map of the United States, with Alaska and Hawaii as insets")
    assert f"the {len(ids)} agencies of this digest" in alt


def test_hostile_names_are_drawn_as_text_and_the_alt_text_stays_short(hostile_config):
    db = sqlite_utils.Database(database(hostile_config))
    ids = [row[0] for row in db.execute("select id from changes where kind != 'baseline'")]
    for row in changes_by_id(db, ids):
        data = alert_card_data(db, row)
        assert decoded(draw_card(data)).size == (1200, 675)  # "$x$" is no formula
        alt = alt_text(data)
        assert 0 < len(alt) < MAX_ALT and "\u202e" not in alt


def test_a_card_is_stored_by_change_uuid_reused_and_pruned(db, tmp_path):
    crystal = change_id(db, "Crystal Police Department")
    card = make_card(db, tmp_path, MessageKind.ALERT, [crystal])
    assert card is not None
    uuid = changes_by_id(db, [crystal])[0]["uuid"]
    assert Path(card.path) == tmp_path / "cards" / f"{uuid}.png" and card.name == uuid
    made = Path(card.path).stat().st_mtime_ns
    again = make_card(db, tmp_path, MessageKind.ALERT, [crystal])
    assert again == card and Path(card.path).stat().st_mtime_ns == made  # not drawn twice
    assert remove_cards(tmp_path, keep={uuid}) == 0
    assert remove_cards(tmp_path, keep=set()) == 1
    assert not list((tmp_path / "cards").iterdir())


def test_importing_cards_does_not_load_matplotlib():
    # (numpy is loaded by sqlite-utils anyway; the cards import it only to draw.)
    code = "import sys, bot.cards; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=cli_env(None))


def test_prune_removes_the_cards_no_message_in_the_outbox_needs(sample_config, tmp_path):
    shutil.copy(database(sample_config), tmp_path / "ringwatch.db")
    store = Store.open(tmp_path / "ringwatch.db")
    try:
        crystal = change_id(store.db, "Crystal Police Department")
        kept = make_card(store.db, tmp_path, MessageKind.ALERT, [crystal])
        digest = make_card(store.db, tmp_path, MessageKind.DIGEST, [crystal, crystal + 1])
        assert kept is not None and digest is not None
        store.db.execute("delete from outbox")
        alert = OutboxMessage("x", "account", MessageKind.ALERT, f"change:{crystal}", "New",
                              change_ids=(crystal,))  # fmt: skip
        store.outbox.queue(None, [alert])
        assert prune_cards(store, tmp_path) == 1  # the digest's: no message of it is left
    finally:
        store.close()
    assert Path(kept.path).is_file() and not Path(digest.path).exists()
