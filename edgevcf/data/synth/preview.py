"""A labelled contact sheet a person can look at: fresh, old and no-fracture rows.

Fractured levels are outlined (red = fresh, yellow = old) and captioned with level, Genant
grade and morphology, so one glance shows whether the generator draws what the manifest says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_ROWS = (
    ("fresh", "FRESH fracture (positive)"),
    ("old", "OLD fracture only (negative)"),
    ("none", "no fracture (negative)"),
)
_COLOURS = {"fresh": (230, 40, 40), "old": (240, 200, 0)}


def _kind(row: dict[str, str]) -> str:
    if row["fresh_levels"]:
        return "fresh"
    return "old" if row["old_levels"] else "none"


def contact_sheet(thumbs: list[tuple[dict[str, str], dict[str, Any]]], path: Path) -> None:
    """Write the sheet to ``path`` (PNG, RGB)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    title_font = ImageFont.load_default(size=18)
    by_kind: dict[str, list[tuple[dict[str, str], dict[str, Any]]]] = {k: [] for k, _ in _ROWS}
    for row, th in thumbs:
        by_kind[_kind(row)].append((row, th))
    tile_w = max([th["image"].shape[1] for _, th in thumbs] + [200]) + 10
    tile_h = max([th["image"].shape[0] for _, th in thumbs] + [200]) + 50
    cols = max([len(v) for v in by_kind.values()] + [1])
    sheet = Image.new("RGB", (cols * tile_w + 10, len(_ROWS) * (tile_h + 28) + 10), (25, 25, 25))
    draw = ImageDraw.Draw(sheet)
    y = 5
    for kind, title in _ROWS:
        draw.text((8, y), title, fill=(255, 255, 255), font=title_font)
        y += 26
        for j, (row, th) in enumerate(by_kind[kind]):
            x = 5 + j * tile_w
            sheet.paste(Image.fromarray(th["image"]).convert("RGB"), (x, y))
            for part in filter(None, row["fractures"].split(";")):
                level, age = part.split(":")[:2]
                pts = th["levels"].get(level)
                if pts:
                    xs, ys = [p[0] + x for p in pts], [p[1] + y for p in pts]
                    draw.polygon(list(zip(xs, ys, strict=True)), outline=_COLOURS[age], width=2)
                    draw.text((min(xs) - 34, min(ys)), level, fill=_COLOURS[age], font=font)
            h = th["image"].shape[0]
            caption = f"{row['image_id']} label={row['label']}" + (
                " (noisy)" if row["label_noise"] == "1" else ""
            )
            draw.text((x, y + h + 2), caption, fill=(220, 220, 220), font=font)
            detail = row["fractures"].replace(";", "  ") or (
                row["mimics"].replace(";", " ") or "normal"
            )
            draw.text((x, y + h + 18), detail[:48], fill=(180, 180, 180), font=font)
        y += tile_h
    tmp = path.with_name(path.name + ".part")
    sheet.save(tmp, format="PNG")
    tmp.replace(path)
