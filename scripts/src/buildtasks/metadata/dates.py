"""moment.js date formatting for `{{date 'YYYYMMDD' tz='Asia/Tokyo'}}` and `{{commit_date}}`.

`format_moment` formats a `datetime` the way moment.js's `format()` does in its default
English locale; `zone` resolves a `tz=` name (an IANA time zone).
"""

from __future__ import annotations

import calendar
import math
import re
import zoneinfo
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta

from buildtasks.errors import ConfigError


def zone(name: str) -> zoneinfo.ZoneInfo:
    """Return the IANA time zone `name`, or raise `ConfigError` when there is none."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone '{name}' — use an IANA name like 'Europe/Paris'"
        ) from None


_LOCALE_FORMATS = {
    "LTS": "h:mm:ss A",
    "LT": "h:mm A",
    "L": "MM/DD/YYYY",
    "LL": "MMMM D, YYYY",
    "LLL": "MMMM D, YYYY h:mm A",
    "LLLL": "dddd, MMMM D, YYYY h:mm A",
    "l": "M/D/YYYY",
    "ll": "MMM D, YYYY",
    "lll": "MMM D, YYYY h:mm A",
    "llll": "ddd, MMM D, YYYY h:mm A",
}
_LOCALE_TOKEN = re.compile(r"(\[[^\[]*\])|(\\)?(LTS|LT|LL?L?L?|l{1,4})")
_MOMENT_TOKEN = re.compile(
    r"(\[[^\[]*\])|(\\)?([Hh]mm(ss)?|Mo|MM?M?M?|Do|DDDo|DD?D?D?|ddd?d?|do?|w[o|w]?|W[o|W]?"
    r"|Qo?|N{1,5}|YYYYYY|YYYYY|YYYY|YY|y{2,4}|yo?|gg(ggg?)?|GG(GGG?)?|e|E|a|A|hh?|HH?|kk?"
    r"|mm?|ss?|S{1,9}|x|X|zz?|ZZ?|.)",
    re.DOTALL,
)
_MONTHS = tuple(calendar.month_name)[1:]
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_UNSUPPORTED_DATE_TOKENS = re.compile(r"N{1,5}|y{1,4}|yo|YYYYY|YYYYYY|gg|ggggg|GG|GGGGG")


def format_moment(moment: datetime, fmt: str) -> str:
    """Format `moment` with a moment.js format string (English locale)."""
    for _ in range(5):
        expanded = _LOCALE_TOKEN.sub(_expand_locale, fmt)
        if expanded == fmt:
            break
        fmt = expanded
    return "".join(_format_token(moment, match.group()) for match in _MOMENT_TOKEN.finditer(fmt))


def _expand_locale(match: re.Match[str]) -> str:
    if match.group(1) or match.group(2):
        return match.group()
    return _LOCALE_FORMATS[match.group(3)]


def _format_token(moment: datetime, token: str) -> str:
    if token.startswith("["):
        return token[1:-1] if token.endswith("]") else token
    if token.startswith("\\"):
        return token[1:]
    if _UNSUPPORTED_DATE_TOKENS.fullmatch(token):
        raise ConfigError(
            f"date token '{token}' is not supported — wrap literal text in [brackets]"
        )
    formatter = _DATE_TOKENS.get(token)
    if formatter is not None:
        return formatter(moment)
    if token[0] in "Hh" and token[1:] in ("mm", "mmss"):
        return "".join(
            _DATE_TOKENS[part](moment) for part in (token[0], "mm", "ss")[: len(token) - 1]
        )
    if re.fullmatch("S{1,9}", token):
        return _fraction(moment, len(token))
    return token


def _ordinal(number: int) -> str:
    if (number % 100) // 10 == 1:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"


def _fraction(moment: datetime, digits: int) -> str:
    millis = moment.microsecond // 1000
    if digits <= 3:
        return f"{millis:03d}"[:digits]
    return f"{millis:03d}".ljust(digits, "0")


def _offset(moment: datetime, sep: str) -> str:
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{sep}{mins:02d}"


def _week(moment: datetime, dow: int, doy: int) -> tuple[int, int]:
    """Return moment's (week, week-year) for a locale's first weekday `dow` and `doy`."""
    year = moment.year
    week = (moment.timetuple().tm_yday - _first_week_offset(year, dow, doy) - 1) // 7 + 1
    if week < 1:
        return week + _weeks_in_year(year - 1, dow, doy), year - 1
    if week > _weeks_in_year(year, dow, doy):
        return week - _weeks_in_year(year, dow, doy), year + 1
    return week, year


def _first_week_offset(year: int, dow: int, doy: int) -> int:
    fwd = 7 + dow - doy
    weekday = (date(year, 1, fwd).isoweekday()) % 7
    return -((7 + weekday - dow) % 7) + fwd - 1


def _weeks_in_year(year: int, dow: int, doy: int) -> int:
    days = 366 if calendar.isleap(year) else 365
    return (days - _first_week_offset(year, dow, doy) + _first_week_offset(year + 1, dow, doy)) // 7


def _year(year: int) -> str:
    return f"{year:04d}" if year <= 9999 else f"+{year}"


def _hour12(moment: datetime) -> int:
    return moment.hour % 12 or 12


_DATE_TOKENS: Mapping[str, Callable[[datetime], str]] = {
    "M": lambda m: str(m.month),
    "Mo": lambda m: _ordinal(m.month),
    "MM": lambda m: f"{m.month:02d}",
    "MMM": lambda m: _MONTHS[m.month - 1][:3],
    "MMMM": lambda m: _MONTHS[m.month - 1],
    "Q": lambda m: str((m.month - 1) // 3 + 1),
    "Qo": lambda m: _ordinal((m.month - 1) // 3 + 1),
    "D": lambda m: str(m.day),
    "Do": lambda m: _ordinal(m.day),
    "DD": lambda m: f"{m.day:02d}",
    "DDD": lambda m: str(m.timetuple().tm_yday),
    "DDDo": lambda m: _ordinal(m.timetuple().tm_yday),
    "DDDD": lambda m: f"{m.timetuple().tm_yday:03d}",
    "d": lambda m: str(m.isoweekday() % 7),
    "do": lambda m: _ordinal(m.isoweekday() % 7),
    "dd": lambda m: _WEEKDAYS[m.isoweekday() % 7][:2],
    "ddd": lambda m: _WEEKDAYS[m.isoweekday() % 7][:3],
    "dddd": lambda m: _WEEKDAYS[m.isoweekday() % 7],
    "e": lambda m: str(m.isoweekday() % 7),
    "E": lambda m: str(m.isoweekday()),
    "w": lambda m: str(_week(m, 0, 6)[0]),
    "wo": lambda m: _ordinal(_week(m, 0, 6)[0]),
    "ww": lambda m: f"{_week(m, 0, 6)[0]:02d}",
    "W": lambda m: str(_week(m, 1, 4)[0]),
    "Wo": lambda m: _ordinal(_week(m, 1, 4)[0]),
    "WW": lambda m: f"{_week(m, 1, 4)[0]:02d}",
    "gggg": lambda m: f"{_week(m, 0, 6)[1]:04d}",
    "GGGG": lambda m: f"{_week(m, 1, 4)[1]:04d}",
    "Y": lambda m: _year(m.year),
    "YY": lambda m: f"{m.year % 100:02d}",
    "YYYY": lambda m: _year(m.year),
    "H": lambda m: str(m.hour),
    "HH": lambda m: f"{m.hour:02d}",
    "h": lambda m: str(_hour12(m)),
    "hh": lambda m: f"{_hour12(m):02d}",
    "k": lambda m: str(m.hour or 24),
    "kk": lambda m: f"{m.hour or 24:02d}",
    "m": lambda m: str(m.minute),
    "mm": lambda m: f"{m.minute:02d}",
    "s": lambda m: str(m.second),
    "ss": lambda m: f"{m.second:02d}",
    "a": lambda m: "pm" if m.hour > 11 else "am",
    "A": lambda m: "PM" if m.hour > 11 else "AM",
    "Z": lambda m: _offset(m, ":"),
    "ZZ": lambda m: _offset(m, ""),
    "X": lambda m: str(math.floor(m.timestamp())),
    "x": lambda m: str(math.floor(m.timestamp() * 1000)),
    "z": lambda m: m.tzname() or "",
    "zz": lambda m: m.tzname() or "",
}
