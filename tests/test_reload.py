"""Reload without restart: SIGHUP and POST /-/reload, rotated secrets, refused configurations, old collectors closed."""

from __future__ import annotations

import io
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter import logs
from exporter.app import Exporter
from exporter.reload import Reloader
from exporter.settings import MASK, RootSettings, load_settings
from exporter.simulator import Simulator, SimulatorOptions
from exporter.webconfig import WebConfigHolder, load_web_config, protect
from tests.helpers import MODEL, get, parse, value
from tests.test_process import Running
from tests.test_webconfig import bcrypt_hash

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorOptions(host="127.0.0.1", port=0, jobs=2, platforms=["informatica"])) as simulator:
        yield simulator


def config(sim: Simulator, directory: Path, names: tuple[str, ...] = ("alpha",), **extra: Any) -> dict[str, Any]:
    flows = [job["id"] for job in sim.jobs("informatica")]
    return {
        "targets": [
            {
                "name": name,
                "platform": "informatica",
                "login_url": sim.url,
                "username": "monitor",
                "password_file": str(directory / "password"),
                "dataflows": flows,
                **extra,
            }
            for name in names
        ]
    }


def write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document))


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def metrics(url: str) -> Any:
    return parse(requests.get(url + "/metrics", timeout=10).text)


def test_sighup_and_post_reload_in_a_running_exporter(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("rotated-away-password")
    path = tmp_path / "config.yml"
    write(path, config(sim, tmp_path))
    running = Running(["--config.file", str(path)])
    try:
        assert value(metrics(running.url), "ingestion_scrape_success", target="alpha") == 0  # wrong password

        # The Kubernetes Secret is rotated: the file changes, SIGHUP makes it count.
        (tmp_path / "password").write_text(sim.credentials["informatica"]["password"])
        running.process.send_signal(signal.SIGHUP)
        eventually(lambda: value(metrics(running.url), "ingestion_scrape_success", target="alpha") == 1)

        # A broken configuration is refused with its reason; the last good one keeps serving.
        write(path, {"targets": [{**config(sim, tmp_path)["targets"][0], "usernme": "typo"}]})
        refused = requests.post(running.url + "/-/reload", timeout=10)
        assert refused.status_code == 500
        assert "targets[0].usernme" in refused.text
        samples = metrics(running.url)
        assert value(samples, "ingestion_scrape_success", target="alpha") == 1
        assert value(samples, "ingestion_config_last_reload_successful") == 0
        good_at = value(samples, "ingestion_config_last_reload_success_timestamp_seconds")

        write(path, config(sim, tmp_path, ("alpha", "beta")))
        accepted = requests.post(running.url + "/-/reload", timeout=10)
        assert accepted.status_code == 200, accepted.text
        samples = metrics(running.url)
        assert value(samples, "ingestion_scrape_success", target="beta") == 1
        assert value(samples, "ingestion_config_last_reload_successful") == 1
        assert value(samples, "ingestion_config_last_reload_success_timestamp_seconds") > good_at
        assert requests.get(running.url + "/-/reload", timeout=5).status_code == 405
    finally:
        running.stop()
    text = "".join(running.log_lines)
    assert "reload refused; the running configuration stays in force" in text
    assert "targets[0].usernme" in text
    assert sim.credentials["informatica"]["password"] not in text
    assert "Traceback" not in text


class InProcess:
    """The exporter and reloader wired as cli.main wires them, on a config file the test rewrites."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.redactor = logs.Redactor()
        self.exporter = Exporter(self.load(), self.redactor.sink)
        self.app = self.exporter.app
        self.app.ready.set()
        self.reloader = Reloader(self.exporter, self.load, close_after=0.0)
        self.app.reload = self.reloader

    def load(self) -> RootSettings:
        return load_settings(MODEL, self.path)

    def post_reload(self) -> tuple[str, str]:
        seen: list[str] = []
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/-/reload", "wsgi.input": io.BytesIO()}
        body = b"".join(self.app(environ, lambda status, _h: seen.append(status)))
        return seen[0], body.decode()


def test_swap_closes_the_old_collectors_and_forgets_removed_targets(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "password").write_text(sim.credentials["informatica"]["password"])
    path = tmp_path / "config.yml"
    write(path, config(sim, tmp_path, ("alpha", "gone")))
    exporter = InProcess(path)
    assert value(parse(get(exporter.app, "/metrics")[1]), "ingestion_scrape_success", target="gone") == 1
    pool = exporter.exporter.pool
    assert pool.size == 4 + 4  # two targets of 4: a pool of their own each would have run as many
    old = exporter.app.runners
    closed = threading.Event()
    real_close = old.close
    old.close = lambda: (real_close(), closed.set())  # type: ignore[method-assign]

    write(path, config(sim, tmp_path, ("alpha",)))
    status, body = exporter.post_reload()
    assert status.startswith("200"), body
    assert exporter.app.runners is not old
    assert closed.wait(5), "the replaced collectors were not closed"
    assert exporter.exporter.pool is pool and pool.size == 4, "the pool lives with the process, sized by its lanes"
    samples = parse(get(exporter.app, "/metrics")[1])
    assert value(samples, "ingestion_scrape_success", target="alpha") == 1
    assert not [key for key in samples if ("target", "gone") in key[1]], "series of a removed target remain"


def test_refused_reload_keeps_everything_and_names_the_field(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "password").write_text(sim.credentials["informatica"]["password"])
    path = tmp_path / "config.yml"
    write(path, config(sim, tmp_path))
    exporter = InProcess(path)
    before = exporter.app.runners
    for broken in ("targets: [", yaml.safe_dump(config(sim, tmp_path, max_concurrency=0))):
        path.write_text(broken)
        status, body = exporter.post_reload()
        assert status.startswith("500"), body
        assert "stays in force" in body
        assert exporter.app.runners is before
    (tmp_path / "password").write_text("")
    write(path, config(sim, tmp_path))
    status, body = exporter.post_reload()
    assert status.startswith("500") and "password_file" in body and "is empty" in body
    assert value(parse(get(exporter.app, "/metrics")[1]), "ingestion_scrape_success", target="alpha") == 1


def test_reload_adds_the_new_secrets_to_the_log_redactor(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("first-secret-value")
    path = tmp_path / "config.yml"
    write(path, config(sim, tmp_path))
    exporter = InProcess(path)
    (tmp_path / "password").write_text("second-secret-value")
    assert exporter.reloader()[0]
    assert exporter.redactor.redact("x second-secret-value y") == f"x {MASK} y"


def test_scrapes_during_reloads_always_answer(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "password").write_text(sim.credentials["informatica"]["password"])
    path = tmp_path / "config.yml"
    write(path, config(sim, tmp_path))
    exporter = InProcess(path)
    statuses: list[str] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            statuses.append(get(exporter.app, "/metrics")[0])

    workers = [threading.Thread(target=scrape) for _ in range(3)]
    for worker in workers:
        worker.start()
    for _ in range(5):
        assert exporter.reloader()[0]
    stop.set()
    for worker in workers:
        worker.join()
    assert statuses and all(s.startswith("200") for s in statuses)


def test_reload_replaces_the_web_config_and_refuses_a_broken_one(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "password").write_text(sim.credentials["informatica"]["password"])
    path, web_path = tmp_path / "config.yml", tmp_path / "web.yml"
    write(path, config(sim, tmp_path))
    write(web_path, {"basic_auth_users": {"prometheus": bcrypt_hash("first-password")}})
    exporter = InProcess(path)
    holder = WebConfigHolder(load_web_config(web_path))
    exporter.reloader = Reloader(
        exporter.exporter, exporter.load, lambda: load_web_config(web_path), holder, close_after=0.0
    )
    guarded = protect(exporter.app, holder)

    def status(password: str) -> str:
        headers = {"HTTP_AUTHORIZATION": requests.auth._basic_auth_str("prometheus", password)}
        return get(guarded, "/", headers=headers)[0][:3]

    assert (status("first-password"), status("second-password")) == ("200", "401")
    write(web_path, {"basic_auth_users": {"prometheus": bcrypt_hash("second-password")}})
    assert exporter.reloader()[0]
    assert (status("first-password"), status("second-password")) == ("401", "200")
    write(web_path, {"basic_auth_users": {"prometheus": "not-a-hash"}})
    ok, message = exporter.reloader()
    assert not ok and "basic_auth_users.prometheus: not a bcrypt hash" in message
    assert status("second-password") == "200"
