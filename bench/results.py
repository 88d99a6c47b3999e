"""results.json: every measured point and what was derived from them, rounded to six significant digits and laid out
one point per line, so the file stays readable and a re-run's diff stays small."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _rounded(value: Any) -> Any:
    """Six significant digits: more than any measure here is good for, and short lines."""
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def write_json(record: dict[str, Any], path: Path) -> Path:
    """Write `record` (its sets' `points` one per line; NaN as null) to `path`."""
    record = _rounded(record)
    sets = record.get("sets", {})
    points = {name: data.pop("points", []) for name, data in sets.items()}
    for name, data in sets.items():
        data["points"] = f"@points:{name}"
    text = json.dumps(record, indent=1)
    for name, members in points.items():
        rows = ",\n".join("    " + json.dumps(p, sort_keys=True) for p in members)
        text = text.replace(json.dumps(f"@points:{name}"), f"[\n{rows}\n   ]" if members else "[]", 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path
