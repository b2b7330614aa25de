"""scripts/debian-mirror.sh, which gives scripts/image-check.sh its Debian mirror: it reads the apt sources under
a temporary root (APT_SOURCES_ROOT) in both formats and picks the entry of Debian's main archive; DEBIAN_MIRROR
overrides it; without either it fails with a message that names the override. No network: the script only
reads files. The image check itself, which builds and runs the image, is opt-in and not part of this suite.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MIRROR_SCRIPT = ROOT / "scripts" / "debian-mirror.sh"
IMAGE_CHECK = ROOT / "scripts" / "image-check.sh"

NODESOURCE = "Types: deb\nURIs: https://node.example/node_20.x\nSuites: nodistro\nComponents: main\n"

# This machine's layout: one deb822 file with the archive and its security archive.
DEBIAN_SOURCES = """\
Types: deb
# an older snapshot of the same archive
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def apt_root(tmp_path: Path, files: dict[str, str], os_release: str | None = None) -> Path:
    """A root directory holding etc/apt/<name> for each file (names relative to etc/apt)."""
    for name, text in files.items():
        path = tmp_path / "etc" / "apt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if os_release is not None:
        (tmp_path / "etc").mkdir(exist_ok=True)
        (tmp_path / "etc" / "os-release").write_text(os_release)
    return tmp_path


def mirror(root: Path, *args: str, override: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "DEBIAN_MIRROR"}
    env["APT_SOURCES_ROOT"] = str(root)
    if override is not None:
        env["DEBIAN_MIRROR"] = override
    return subprocess.run(
        ["bash", str(MIRROR_SCRIPT), *args], capture_output=True, text=True, env=env, check=False, timeout=30
    )


def chosen(root: Path, *args: str) -> str:
    result = mirror(root, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_deb822_picks_the_main_archive_not_security_or_third_party(tmp_path: Path) -> None:
    root = apt_root(
        tmp_path,
        {
            # Sorted before debian.sources, but neither a Debian suite nor enabled.
            "sources.list.d/a-nodesource.sources": NODESOURCE,
            "sources.list.d/b-off.sources": (
                "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n"
            ),
            "sources.list.d/debian.sources": DEBIAN_SOURCES,
            # apt ignores names without .list or .sources.
            "sources.list.d/cloud.list.disabled": "deb http://ignored.example/debian bookworm main\n",
        },
    )
    assert chosen(root) == "http://mirror.example/debian"


def test_one_line_format_prefers_the_plain_suite_and_skips_options_and_sources(tmp_path: Path) -> None:
    root = apt_root(
        tmp_path,
        {
            "sources.list": """\
# deb http://commented.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] http://updates.example/debian bookworm-updates main
deb-src http://src.example/debian bookworm main
deb http://contrib.example/debian bookworm contrib non-free
deb [ trusted=yes ] https://plain.example/debian/ bookworm main contrib  # the archive
deb http://later.example/debian bookworm main
""",
        },
    )
    assert chosen(root) == "https://plain.example/debian"


def test_sources_list_comes_before_sources_list_d(tmp_path: Path) -> None:
    root = apt_root(
        tmp_path,
        {
            "sources.list": "deb http://list.example/debian stable main\n",
            "sources.list.d/debian.sources": DEBIAN_SOURCES,
        },
    )
    assert chosen(root) == "http://list.example/debian"


def test_an_updates_suite_serves_when_no_plain_one_exists_but_security_never(tmp_path: Path) -> None:
    updates = apt_root(
        tmp_path / "updates",
        {
            "sources.list": "deb http://sec.example/debian-security bookworm-security main\n"
            "deb http://upd.example/debian bookworm-updates main\n"
        },
    )
    assert chosen(updates) == "http://upd.example/debian"
    security = apt_root(
        tmp_path / "security", {"sources.list": "deb http://sec.example/debian-security bookworm-security main\n"}
    )
    assert mirror(security).returncode == 1


def test_the_machines_own_codename_counts_only_on_debian(tmp_path: Path) -> None:
    sources = {"sources.list": "deb http://archive.example/debian trixie main\n"}
    debian = apt_root(
        tmp_path / "debian", sources, 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_CODENAME=trixie\n'
    )
    assert chosen(debian) == "http://archive.example/debian"
    other = apt_root(
        tmp_path / "other",
        {"sources.list": "deb http://archive.example/other jammy main\n"},
        "ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=jammy\n",
    )
    assert mirror(other).returncode == 1


def test_the_suite_argument_is_a_debian_suite(tmp_path: Path) -> None:
    root = apt_root(tmp_path, {"sources.list": "deb http://archive.example/debian trixie main\n"})
    assert mirror(root).returncode == 1, "trixie is neither the default suite nor the machine's codename"
    assert chosen(root, "trixie") == "http://archive.example/debian"


def test_debian_mirror_overrides_the_sources(tmp_path: Path) -> None:
    root = apt_root(tmp_path, {"sources.list.d/debian.sources": DEBIAN_SOURCES})
    result = mirror(root, override="http://override.example/debian")
    assert (result.returncode, result.stdout) == (0, "http://override.example/debian\n")
    result = mirror(tmp_path / "empty", override="http://override.example/debian")
    assert (result.returncode, result.stdout) == (0, "http://override.example/debian\n")


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"sources.list": "# nothing but comments\n"},
        {"sources.list.d/node.sources": NODESOURCE},
        {"sources.list": "deb cdrom:[Debian 12]/ bookworm main\n"},
    ],
    ids=["no-sources", "comments", "third-party-only", "cdrom-only"],
)
def test_without_a_debian_archive_it_fails_and_names_the_override(tmp_path: Path, files: dict[str, str]) -> None:
    result = mirror(apt_root(tmp_path, files))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "DEBIAN_MIRROR" in result.stderr and str(tmp_path) in result.stderr


def test_image_check_takes_its_mirror_and_base_from_the_machine_and_the_dockerfile() -> None:
    text = IMAGE_CHECK.read_text()
    assert "scripts/debian-mirror.sh" in text
    # Every URL in the check is the exporter's loopback address: no mirror or registry of its own.
    urls = re.findall(r"[a-z][a-z0-9+.-]*://[^\s\"'/]+", text)
    assert urls and set(urls) == {"http://127.0.0.1:$port"}
    assert "base_ref=$(sed -n 's/^ARG PYTHON_IMAGE=" in text
