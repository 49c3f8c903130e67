"""The per-process service objects, built in the application's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .passwords import PasswordService
from .sessions import SessionStore
from .settings import Settings
from .tokens import TokenService


@dataclass
class Services:
    settings: Settings
    tokens: TokenService
    engine: AsyncEngine = field(init=False)
    sessionmaker: async_sessionmaker[AsyncSession] = field(init=False)
    passwords: PasswordService = field(init=False)
    sessions: SessionStore = field(init=False)
