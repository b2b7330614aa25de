"""Run the vendor API simulator on its own, e.g. for the end-to-end stack or to poke at it with curl.

    python -m exporter.simulator --listen 127.0.0.1:8080 --jobs 25 --latency-ms 20 [--seed]
        [--platforms informatica,...] [--session-idle-seconds N] [--transition-seconds N]
        [--random-seed N] [--job-log-seconds N] [--churn-seconds N] [--token-seconds N]
        [--credentials-out PATH] [--config-out FILE]

It prints one line, `url=http://127.0.0.1:8080 platforms=informatica [credentials=PATH] [config=FILE]`,
and serves until SIGINT or SIGTERM, then exits 0. Port 0 picks a free port (read it from that line).
Passwords are new on every run and never printed: `--credentials-out` writes them as JSON
(`{"informatica": {"username": ..., "password": ...}}`, mode 0600), and `--config-out` writes a
ready exporter configuration (YAML: one target per platform, named `sim-<platform>`) whose secrets
are files beside it (`sim-<platform>.<field>`, mode 0600), so
`python -m exporter --config.file FILE` watches the simulator. Both are written before the line is
printed. `--churn-seconds N` replaces the oldest job of each platform with a new one every N
seconds (Siren then needs `--job-log-seconds`); `--token-seconds N` is how long an IAM token lasts.
The control API under /_sim/ is described in exporter/simulator/app.py.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

import yaml

from exporter.simulator.app import Simulator, SimulatorOptions
from exporter.simulator.huawei_iam import TOKEN_SECONDS
from exporter.simulator.platforms import PLATFORMS
from exporter.simulator.targets import simulated_config, write_private


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        sim = _simulator(args)
    except ValueError as problem:
        parser.error(str(problem))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sim.start()
    try:
        line = f"url={sim.url} platforms={','.join(sim.platforms)}"
        if args.credentials_out is not None:
            write_private(args.credentials_out, json.dumps(sim.credentials, indent=2))
            line += f" credentials={args.credentials_out}"
        if args.config_out is not None:
            config = simulated_config(sim, args.config_out.absolute().parent)
            write_private(args.config_out, yaml.safe_dump(config, sort_keys=False))
            line += f" config={args.config_out}"
        print(line, flush=True)
        stop.wait()
    finally:
        sim.stop()
    return 0


def _simulator(args: argparse.Namespace) -> Simulator:
    return Simulator(
        SimulatorOptions(
            host=args.listen[0],
            port=args.listen[1],
            jobs=args.jobs,
            seed=args.seed,
            latency_seconds=args.latency_ms / 1000,
            session_idle_seconds=args.session_idle_seconds,
            transition_seconds=args.transition_seconds,
            random_seed=args.random_seed,
            platforms=args.platforms,
            job_log_seconds=args.job_log_seconds,
            churn_seconds=args.churn_seconds,
            token_seconds=args.token_seconds,
        )
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m exporter.simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 8080), metavar="HOST:PORT")
    parser.add_argument("--jobs", type=int, default=25, help="jobs per platform (default 25)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every vendor request")
    parser.add_argument("--seed", action="store_true", help="serve the seed pages verbatim")
    parser.add_argument("--platforms", type=_platforms, help=f"a comma list of {','.join(PLATFORMS)}")
    parser.add_argument("--session-idle-seconds", type=float, default=1800.0)
    parser.add_argument("--transition-seconds", type=float, default=20.0)
    parser.add_argument("--random-seed", type=int, default=1)
    parser.add_argument(
        "--job-log-seconds",
        type=float,
        default=None,
        metavar="N",
        help="keep job logs (Siren's) at a steady size: the runs of the last N seconds, already full at start",
    )
    parser.add_argument(
        "--churn-seconds",
        type=float,
        default=None,
        metavar="N",
        help="every N seconds, delete each platform's oldest job and create a new one",
    )
    parser.add_argument(
        "--token-seconds", type=float, default=TOKEN_SECONDS, metavar="N", help="how long an IAM token stays valid"
    )
    parser.add_argument("--credentials-out", type=Path, default=None, metavar="PATH")
    parser.add_argument(
        "--config-out", type=Path, default=None, metavar="FILE", help="write an exporter configuration for this run"
    )
    return parser


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _platforms(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(PLATFORMS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown platforms {unknown}; known: {', '.join(PLATFORMS)}")
    return names


if __name__ == "__main__":
    raise SystemExit(main())
