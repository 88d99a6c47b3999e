"""The REST service: FastAPI app factory and settings (docs/service.md describes the API and its operation)."""

from service.api.app import create_app
from service.api.settings import Settings

__all__ = ["Settings", "create_app"]
