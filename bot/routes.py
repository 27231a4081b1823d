"""Routes: webhook and Apprise targets that carry a filter (`[[webhook.targets]]`,
`[[apprise.targets]]`), each receiving exactly the changes its filter matches.

A route names its destination (`url`, or `url_env`: the environment variable holding a
secret one) and its filter in the words people use (states, counties, a ZIP code or
"lat,lon" with a radius); `route_filter` reads them into the one filter (bot.places),
and `route_problems` says what `check-config` should refuse, with a suggestion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bot.areas import DEFAULT_RADIUS_MILES, Filter
from bot.normalise import state_code
from bot.places import PlaceError, parse_county, parse_point, parse_radius


@dataclass(frozen=True)
class RouteSettings:
    """One `[[webhook.targets]]` or `[[apprise.targets]]` table."""

    url: str = ""
    url_env: str = ""  # the variable holding the URL(s) instead: a secret stays out of the file
    states: list[str] = field(default_factory=list)
    counties: list[str] = field(default_factory=list)  # "St. Louis County, MN"
    near: str = ""  # a ZIP code or "lat,lon"
    radius: str = ""  # with near: "50mi", "40km" (default 25 miles)

    def destination(self) -> str:
        """The URL (or Apprise URLs) it sends to: its own, or its variable's."""
        return self.url or os.environ.get(self.url_env, "").strip()


def route_secrets(routes: list[RouteSettings]) -> tuple[str, ...]:
    """The variables these routes read their URLs from: their values are secrets."""
    return tuple(route.url_env for route in routes if route.url_env)


def route_filter(route: RouteSettings) -> Filter:
    """The route's filter; PlaceError names what is wrong (route_problems reports it)."""
    states = []
    for value in route.states:
        code = state_code(value)
        if not code:
            raise PlaceError(f"{value[:40]!r} is not a US state: write MN or Minnesota.")
        states.append(code)
    counties = frozenset(parse_county(name) for name in route.counties)
    places = ()
    if route.near:
        radius = parse_radius(route.radius) if route.radius else DEFAULT_RADIUS_MILES
        places = (parse_point(route.near, radius),)
    elif route.radius:
        raise PlaceError('radius goes with near (a ZIP code or "lat,lon").')
    return Filter(frozenset(states), counties, places)


def route_problems(routes: list[RouteSettings], key: str) -> list[tuple[str, str]]:
    """(key, what is wrong) for each route that names no destination or a bad filter."""
    problems = []
    for n, route in enumerate(routes, 1):
        where = f"{key}[{n}]"
        if bool(route.url) == bool(route.url_env):
            problems.append((where, "needs url or url_env (one of them)"))
        try:
            route_filter(route)
        except PlaceError as exc:
            problems.append((where, str(exc)))
    return problems
