"""Capture times of gallery entries: ISO 8601 UTC strings, and the integers they are filtered by.

An entry's ``"time"`` is when its image was taken: the manifest's optional ``time`` column when
the gallery comes from a manifest, else the image file's modification time. It is stored as an
ISO 8601 UTC string with microseconds (``2026-12-02T11:59:12.250000+00:00``), or null when
unknown (indexes written before capture times were kept). Filters compare whole microseconds
since the Unix epoch (:func:`epoch_us`), so both stores select exactly the same entries.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from mpanet_tf.errors import ConfigError, MPANetError

#: The integer stored for an unknown capture time (before year 1, the earliest real time; matched by no
#: time filter).
UNKNOWN_US = -(2**62)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def iso_utc(moment: datetime) -> str:
    """The stored form of a capture time: ISO 8601, UTC, microseconds."""
    return as_utc(moment).isoformat(timespec="microseconds")


def parse_time(text: str, where: str, error: type[MPANetError] = ConfigError) -> datetime:
    """An ISO 8601 date or date-time (``2026-12-02``, ``2026-12-02T11:59``, ``...Z``, ``...+01:00``) in UTC.

    Raises:
        ``error`` (:class:`ConfigError` by default): not ISO 8601, naming ``where`` (the option or
        ``file:line``) and the fix.
    """
    value = str(text).strip()
    try:
        return as_utc(datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value))
    except ValueError:
        raise error(f"{where} has time {text!r}, which is not ISO 8601; write e.g. 2026-12-02T11:59:12Z "
                          "(UTC unless an offset such as +01:00 is given)") from None


def file_time(path) -> str:
    """The modification time of ``path`` as a stored capture time."""
    return iso_utc(datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc))


def epoch_us(value) -> int:
    """Microseconds since the Unix epoch of a stored time string or datetime (:data:`UNKNOWN_US` for None)."""
    if value is None:
        return UNKNOWN_US
    moment = as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds
