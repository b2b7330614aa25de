"""The simulator as a process of its own, the way the end-to-end stack, the soaks and the benchmarks run it.

`command()` is the argument list of `python -m exporter.simulator`, one keyword a flag; `announced()` reads the
one line it prints once it serves.
"""

from __future__ import annotations

import sys


def command(**flags: object) -> list[str]:
    """`jobs=4` is `--jobs 4`, `job_log_seconds=600` is `--job-log-seconds 600`, `seed=True` is `--seed`; it
    listens on a free loopback port unless `listen` says otherwise."""
    argv = [sys.executable, "-m", "exporter.simulator"]
    for key, value in {"listen": "127.0.0.1:0", **flags}.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, str(value)]
    return argv


def announced(line: str) -> dict[str, str]:
    """The fields of the simulator's line: `url`, `platforms`, and `credentials` and `config` when it wrote them."""
    return dict(part.split("=", 1) for part in line.split() if "=" in part)
