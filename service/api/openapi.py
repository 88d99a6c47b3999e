"""Print the OpenAPI document: `python -m service.api.openapi > openapi.json` refreshes the committed contract."""

from __future__ import annotations

import json

from service.api.app import create_app
from service.api.settings import Settings


def document() -> str:
    """The app's schema as committed: 2-space indent, trailing newline. Independent of any GANCODEC_* setting."""
    schema = create_app(Settings.model_construct()).openapi()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(document(), end="")
