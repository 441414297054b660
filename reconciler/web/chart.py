"""The activity chart, drawn on the server as SVG: jobs completed and failed per hour over the
last day, one row of bars per platform. Pure: rows of the activity report in, SVG text out;
every text in it is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

HOUR_WIDTH = 14
ROW_HEIGHT = 44
LABEL_WIDTH = 130


def activity_svg(rows: Sequence[dict[str, Any]], now: datetime, hours: int = 24) -> str:
    """``rows``: dicts with hour, platform, completed, failed (the activity report)."""
    now = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    platforms = sorted({str(r["platform"]) for r in rows})
    counts = {(str(r["platform"]), _hour(r["hour"])): r for r in rows}
    top = max([int(r["completed"]) + int(r["failed"]) for r in rows] or [1]) or 1
    width = LABEL_WIDTH + hours * HOUR_WIDTH + 10
    height = max(1, len(platforms)) * ROW_HEIGHT + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="jobs completed and failed per hour, last {hours} hours">'
    ]
    if not platforms:
        parts.append('<text x="0" y="20" class="muted">no jobs finished in the last day</text>')
    for i, platform in enumerate(platforms):
        base = (i + 1) * ROW_HEIGHT
        parts.append(f'<text x="0" y="{base - 12}" class="label">{escape(platform)}</text>')
        for h in range(hours):
            hour = start + timedelta(hours=h)
            found = counts.get((platform, hour))
            if found is None:
                continue
            done, failed = int(found["completed"]), int(found["failed"])
            x = LABEL_WIDTH + h * HOUR_WIDTH
            done_h = round((ROW_HEIGHT - 8) * done / top)
            failed_h = round((ROW_HEIGHT - 8) * failed / top)
            title = escape(
                f"{platform} {hour:%Y-%m-%d %H}:00 UTC: {done} completed, {failed} failed"
            )
            parts.append(f"<g><title>{title}</title>")
            if done_h:
                parts.append(
                    f'<rect class="ok" x="{x}" y="{base - done_h}" width="{HOUR_WIDTH - 3}" '
                    f'height="{done_h}"/>'
                )
            if failed_h:
                parts.append(
                    f'<rect class="bad" x="{x}" y="{base - done_h - failed_h}" '
                    f'width="{HOUR_WIDTH - 3}" height="{failed_h}"/>'
                )
            parts.append("</g>")
    axis = len(platforms) * ROW_HEIGHT + 18
    parts.append(f'<text x="{LABEL_WIDTH}" y="{axis}" class="muted">{start:%H}:00</text>')
    parts.append(f'<text x="{width - 60}" y="{axis}" class="muted">{now:%H}:00 UTC</text></svg>')
    return "".join(parts)


def _hour(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None, minute=0, second=0, microsecond=0)
    return datetime.fromisoformat(str(value)).replace(tzinfo=None)
