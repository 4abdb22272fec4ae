"""Who is asking and what they may see: the one place the console decides access.

Every page, table and download is built from a :class:`View` (period, mode and
filters parsed from the URL) that :func:`authorize` checked against the
:class:`Principal`. A viewer's view must name one of their teams or tenants;
it is then exactly the report ``chargeback report --team T`` (or ``--tenant``)
prints, never a wider one with rows hidden afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from .accounts import Grants

FILTERS = ("tenant", "team", "app", "model")
MODES = ("showback", "chargeback")
MAX_DAYS = 366
MAX_VALUE_CHARS = 200
QUERY_KEYS = frozenset(("from", "to", "month", "mode", *FILTERS))


class Refused(Exception):
    """403: the principal may not see this; the message says what they may see instead."""


class BadRequest(ValueError):
    """400: the URL asks for something malformed; the message says what."""


@dataclass(frozen=True)
class Principal:
    name: str
    grants: Grants
    via: str  # password | sso | token

    @property
    def role(self) -> str:
        return self.grants.role

    @property
    def sees_everything(self) -> bool:
        return self.grants.role in ("admin", "finance")

    def may_see(self, filters: Mapping[str, str]) -> bool:
        """A slice named by equality filters is theirs when it is inside one of their grants."""
        if self.sees_everything:
            return True
        return filters.get("team") in self.grants.teams or filters.get("tenant") in self.grants.tenants

    def default_slice(self) -> dict[str, str]:
        """The first grant, for a viewer who named none: a team before a tenant."""
        if self.grants.teams:
            return {"team": sorted(self.grants.teams)[0]}
        if self.grants.tenants:
            return {"tenant": sorted(self.grants.tenants)[0]}
        return {}

    def slices(self) -> list[dict[str, str]]:
        """Every slice a viewer may choose (empty for those who see everything)."""
        if self.sees_everything:
            return []
        return [{"team": t} for t in sorted(self.grants.teams)] + [{"tenant": t} for t in sorted(self.grants.tenants)]


@dataclass(frozen=True)
class View:
    first: date
    last: date
    mode: str = "showback"
    filters: dict[str, str] = field(default_factory=dict)
    month: str = ""  # set when the period was given as a month

    def with_filters(self, **changes: str | None) -> View:
        filters = dict(self.filters)
        for key, value in changes.items():
            if value:
                filters[key] = value
            else:
                filters.pop(key, None)
        return replace(self, filters=filters)

    def query(self, **extra: str) -> dict[str, str]:
        """The URL query that names this view (filters in the URL: a view can be shared as a link)."""
        period = {"month": self.month} if self.month else {"from": self.first.isoformat(), "to": self.last.isoformat()}
        return {**period, **({"mode": self.mode} if self.mode != "showback" else {}), **self.filters, **extra}


def parse_view(params: Mapping[str, list[str]], *, today: date | None = None, require: tuple[str, ...] = ()) -> View:
    """A View from the query string; anything malformed is a BadRequest naming it."""
    for key, values in params.items():
        if key in QUERY_KEYS and len(values) > 1:
            raise BadRequest(f"{key} is given {len(values)} times; give it once")
    one = {key: values[0] for key, values in params.items() if values}
    today = today or datetime.now(UTC).date()
    month = one.get("month", "")
    if month and (one.get("from") or one.get("to")):
        raise BadRequest("give either month or from/to, not both")
    if month:
        try:
            first = date.fromisoformat(month + "-01")
        except ValueError:
            raise BadRequest(f"month wants YYYY-MM, got {month!r}") from None
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        last = following - timedelta(days=1)
    elif one.get("from") or one.get("to"):
        try:
            first, last = date.fromisoformat(one.get("from", "")), date.fromisoformat(one.get("to", ""))
        except ValueError:
            raise BadRequest("from and to want YYYY-MM-DD (both UTC days, inclusive), and go together") from None
    else:  # this month so far
        first, last = today.replace(day=1), today
        month = ""
    if last < first:
        raise BadRequest(f"to {last} is before from {first}")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadRequest(f"a view covers at most {MAX_DAYS} days")
    mode = one.get("mode", "showback")
    if mode not in MODES:
        raise BadRequest(f"mode must be one of {', '.join(MODES)}")
    filters = {}
    for name in FILTERS:
        value = one.get(name, "")
        if not value:
            continue
        if len(value) > MAX_VALUE_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise BadRequest(f"{name}: not a name the gateway records")
        filters[name] = value
    for name in require:
        if name not in filters:
            raise BadRequest(f"{name} is required")
    return View(first, last, mode, filters, month)


def authorize(principal: Principal, view: View) -> View:
    """The view, when the principal may see it; Refused otherwise (never a narrower view in silence)."""
    if not principal.may_see(view.filters):
        raise Refused(_refusal(principal))
    return view


def authorize_slice(principal: Principal, filters: Mapping[str, str]) -> None:
    if not principal.may_see(filters):
        raise Refused(_refusal(principal))


def _refusal(principal: Principal) -> str:
    mine = [f"team {t}" for t in sorted(principal.grants.teams)] + [f"tenant {t}" for t in sorted(principal.grants.tenants)]
    return f"{principal.name} may see {', '.join(mine) or 'nothing'} only"
