"""The web dashboard, served by the executor at `/` over the executor's read model."""

from .routes import mount

__all__ = ["mount"]
