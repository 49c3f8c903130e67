"""``python -m bench COMMAND``: every IronTrack benchmark, from the repository root.

host             the report's scenarios on a provisioned host (bench/playbook.yml), report in
                 results/<date>_<host>/                                   (make bench)
service          /ping, /me with one and with many users' tokens, signup, on local Granian
                                                                          (make bench-service)
health           /health vs /ping, and the probes that reached PostgreSQL and Valkey
                                                                          (make bench-health)
metrics          /ping and /me with the metrics on vs off                 (make bench-metrics)
statement-cache  /health and signup with the statement cache on vs off
                                                                  (make bench-statement-cache)
reconverge       re-run playbooks/site.yml on a provisioned host: wall time, changed, slowest
                 tasks (target ≤ 60 s, 0 changed)                (make bench-reconverge)
variants         proxy ÷ direct for /ping and /me under each proxy and Granian setting, on
                 the provisioned local host                         (make bench-variants)
report           rewrite a results directory's report from its raw/ files
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCAL = {
    "service": "bench.service",
    "health": "bench.health",
    "metrics": "bench.metrics",
    "statement-cache": "bench.statement_cache",
    "reconverge": "bench.reconverge",
    "variants": "bench.variants",
}


def host(args: argparse.Namespace) -> int:
    """ansible-playbook bench/playbook.yml against the inventory, with the -e variables."""
    command = [
        "ansible-playbook",
        *("-i", args.inventory),
        str(REPO / "bench" / "playbook.yml"),
        *(f"--extra-vars={extra}" for extra in args.extra_vars),
    ]
    env = {**os.environ}
    shown = " ".join(f"-e {extra}" for extra in args.extra_vars)
    shown = f"python -m bench host -i {args.inventory} {shown}".strip()
    env.setdefault("IRONTRACK_BENCH_COMMAND", shown)
    return subprocess.run(command, env=env, check=False).returncode  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    host_cmd = commands.add_parser("host", help="the report's scenarios on a provisioned host")
    host_cmd.add_argument("-i", "--inventory", default="inventories/local")
    host_cmd.add_argument("-e", "--extra-vars", action="append", default=[], help="-e KEY=VALUE")
    report_cmd = commands.add_parser("report", help="write a results directory's report")
    report_cmd.add_argument("results", type=Path, help="results/<date>_<host>")
    for name, module in LOCAL.items():
        loaded = importlib.import_module(module)
        sub = commands.add_parser(
            name,
            help=(loaded.__doc__ or "").split("\n\n")[0].split(": ", 1)[-1],
            description=loaded.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        loaded.add_arguments(sub)
        sub.set_defaults(run=loaded.run)
    args = parser.parse_args(argv)
    if args.command == "host":
        return host(args)
    if args.command == "report":
        from .report.cli import main as report

        return report([str(args.results)])
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
