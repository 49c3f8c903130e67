"""The per-process service objects, built in the application's lifespan, and the FastAPI
dependency that hands them to the routes (``app.dependency_overrides[get_services]`` in tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request

from .passwords import PasswordService
from .probe import HealthProbe
from .sessions import SessionStore
from .settings import Settings
from .throttle import LoginThrottle
from .tokens import TokenService


@dataclass
class Services:
    settings: Settings
    tokens: TokenService
    engine: AsyncEngine = field(init=False)
    sessionmaker: async_sessionmaker[AsyncSession] = field(init=False)
    passwords: PasswordService = field(init=False)
    sessions: SessionStore = field(init=False)
    throttle: LoginThrottle = field(init=False)
    health: HealthProbe = field(init=False)


def get_services(request: Request) -> Services:
    """FastAPI dependency: this application's services."""
    return request.app.state.services
