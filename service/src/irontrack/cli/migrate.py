"""``irontrack-migrate``: ``alembic upgrade head`` with the packaged migrations and settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from ..settings import ConfigError, load_settings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="irontrack-migrate", description=__doc__)
    parser.add_argument("revision", nargs="?", default="head", help="target (default: head)")
    parser.add_argument("--downgrade", action="store_true", help="downgrade to REVISION")
    args = parser.parse_args(argv)
    try:
        load_settings()
    except ConfigError as error:
        print(f"irontrack-migrate: {error}", file=sys.stderr)
        return 1
    config = alembic_config()
    if args.downgrade:
        command.downgrade(config, args.revision)
    else:
        command.upgrade(config, args.revision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
