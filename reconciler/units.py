"""Human-readable sizes, shared by messages and renderers."""

from __future__ import annotations


def human_size(size: int | float | None) -> str:
    """1536 -> '1.5 KiB'; None -> ''."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}  # fmt: skip


def parse_size(text: str) -> int:
    """'10GiB' -> 10737418240, '500MB' -> 500000000, '1024' -> 1024. ValueError otherwise."""
    value = text.strip().replace("_", "")
    number = value.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ")
    unit = value[len(number) :].strip().lower()
    if unit not in _UNITS or not number:
        raise ValueError(f"'{text}' is not a size such as 500MB, 10GiB or 1048576")
    try:
        size = float(number) * _UNITS[unit]
        if size < 0 or size != size or size == float("inf"):
            raise ValueError
        return int(size)
    except (ValueError, OverflowError):
        raise ValueError(f"'{text}' is not a size such as 500MB, 10GiB or 1048576") from None
