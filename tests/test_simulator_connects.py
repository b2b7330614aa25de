"""The simulator takes a burst of simultaneous connections, as the benchmark's floors and many targets open them."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

from exporter.simulator import Simulator, SimulatorOptions

CONNECTS = 256


def test_256_simultaneous_connects_are_all_accepted_and_answered() -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["siren"])) as sim:
        address = urlsplit(sim.url)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        barrier = threading.Barrier(CONNECTS, timeout=30)
        answers: list[bytes] = []
        failures: list[BaseException] = []
        lock = threading.Lock()

        def connect() -> None:
            try:
                barrier.wait()
                with socket.create_connection((host, port), timeout=30) as connection:
                    connection.sendall(b"GET /_sim/stats HTTP/1.0\r\nHost: simulator\r\n\r\n")
                    status = connection.makefile("rb").readline()
                with lock:
                    answers.append(status)
            except Exception as error:  # every failure is reported below
                with lock:
                    failures.append(error)

        threads = [threading.Thread(target=connect) for _ in range(CONNECTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
        assert len(answers) == CONNECTS and all(status.startswith(b"HTTP/1.1 200") for status in answers), answers[:3]
