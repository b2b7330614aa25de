"""Run the vendor API simulator on its own, e.g. for the end-to-end stack or to poke at it with curl.

    python -m exporter.simulator --listen 127.0.0.1:8080 --jobs 25 --latency-ms 20 [--seed]
        [--platforms informatica,...] [--session-idle-seconds N] [--transition-seconds N]
        [--random-seed N] [--job-log-seconds N] [--credentials-out PATH]

It prints one line, `url=http://127.0.0.1:8080 platforms=informatica [credentials=PATH]`, and serves
until SIGINT or SIGTERM, then exits 0. Port 0 picks a free port (read it from that line). Passwords
are new on every run and never printed: `--credentials-out` writes them as JSON
(`{"informatica": {"username": ..., "password": ...}}`, mode 0600) before the line is printed.
The control API under /_sim/ is described in exporter/simulator/app.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exporter.simulator.app import Simulator, SimulatorOptions
from exporter.simulator.platforms import PLATFORMS


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sim = Simulator(
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
        )
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sim.start()
    try:
        line = f"url={sim.url} platforms={','.join(args.platforms or PLATFORMS)}"
        if args.credentials_out is not None:
            _write_private(args.credentials_out, sim.credentials)
            line += f" credentials={args.credentials_out}"
        print(line, flush=True)
        stop.wait()
    finally:
        sim.stop()
    return 0


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
    parser.add_argument("--credentials-out", type=Path, default=None, metavar="PATH")
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


def _write_private(path: Path, document: Any) -> None:
    """Write readable by the owner only, and atomically, so a waiting reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(document, out, indent=2)
    partial.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
