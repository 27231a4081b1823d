""" "Does my police department partner with Ring?": the answer for a town or a ZIP code,
in plain words (the bot's /check; a channel escapes it for its markup).

The town's or ZIP code's agencies first, then the nearest others, at most CHECK_LISTED in
all, nearest first, with distances from the town's centre (bot.places).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from bot.areas import MAX_RADIUS_MILES, Place, distance_text
from bot.places import PlaceError, state_and_rest, town_point, zip_place
from bot.queries import agencies_in_town, agencies_near

if TYPE_CHECKING:
    import sqlite_utils

CHECK_LISTED = 10  # agencies named in one answer
CHECK_NEAR_MILES = 10.0  # "Within 10 miles: 4 more"
CHECK_EXAMPLE = "/check Crystal MN or /check 55427"


def check_answer(db: sqlite_utils.Database, text: str) -> str:
    """The answer to "/check TOWN ST" or "/check ZIP"; PlaceError when neither is known."""
    text = text.strip()
    if re.fullmatch(r"[0-9]{5}", text):
        place = zip_place(text)
        towns = place.towns
        state, where = place.state, f"ZIP {place.zip} ({place.city}, {place.state})"
        centre = Place(place.lat, place.lon, MAX_RADIUS_MILES)
    else:
        state, town = state_and_rest(text)
        if not state or not town:
            raise PlaceError(f"Name a town and its state, or a ZIP code: {CHECK_EXAMPLE}.")
        point = town_point(town, state)
        listed_there = agencies_in_town(db, town, state)
        if point is None and listed_there and listed_there[0]["lat"] is not None:
            point = (listed_there[0]["lat"], listed_there[0]["lon"])
        if point is None:
            raise PlaceError(f"I know no town {town[:40]} in {state}: try {CHECK_EXAMPLE}.")
        towns, where = (town,), f"{town}, {state}"
        centre = Place(*point, MAX_RADIUS_MILES)
    nearest = agencies_near(db, centre, limit=CHECK_LISTED * 5)
    listed = {row["key"]: row for town in towns for row in agencies_in_town(db, town, state)}
    return _answer(where, list(listed.values()), nearest, centre)


def _since(row: dict[str, Any]) -> str:
    return f"since {row['active_date']}" if row["active_date"] else "no start date given"


def _named(row: dict[str, Any]) -> str:
    return f"{row['name']}, {distance_text(row['miles'])} ({_since(row)})"


def _answer(
    where: str, listed: list[dict[str, Any]], nearest: list[dict[str, Any]], centre: Place
) -> str:
    miles = {row["key"]: row["miles"] for row in nearest}
    listed = sorted(listed, key=lambda row: (miles.get(row["key"], MAX_RADIUS_MILES), row["name"]))
    lines = []
    for row in listed[:CHECK_LISTED]:
        place = ", ".join(p for p in (row["city"], row["state"], row["county"]) if p)
        partner = (
            f"has partnered with Ring since {row['active_date']}"
            if row["active_date"]
            else ("is listed as a Ring partner (no start date given)")
        )
        lines.append(f"{row['name']} ({place}) {partner}.")
    room = CHECK_LISTED - len(lines)
    others = [row for row in nearest if row["key"] not in {r["key"] for r in listed}]
    if listed:
        close = [row for row in others if row["miles"] <= CHECK_NEAR_MILES]
        if close and room > 0:
            shown = "; ".join(_named(row) for row in close[:room])
            more = f"{len(close)} more" if len(close) > 1 else "1 more"
            lines.append(f"Within {distance_text(CHECK_NEAR_MILES)}: {more}: {shown}.")
        return "\n".join(lines)
    if not others:
        return (
            f"No partnership listed for {where}, nor within {distance_text(centre.radius_miles)}."
        )
    shown = "; ".join(_named(row) for row in others[:room])
    return f"No partnership listed for {where}. Nearest: {shown}."
