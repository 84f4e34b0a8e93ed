"""Packaging plugins: wheels and tarballs built from a plugin directory, a wheel installed
with pip into a real virtual environment and discovered there, and ``tether plugins
install|uninstall`` into a temporary HOME (the conftest gives every test its own)."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import json
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from helpers import PluginWriter
from tether import PluginManager, TetherConfig, default_search_paths, discover
from tether._discovery import SearchPath
from tether.cli import cli
from tether.errors import ManifestError, PackagingError
from tether.packaging import (
    build_tarball,
    build_wheel,
    distribution_name,
    hash_plugin,
    install_plugin,
    install_root,
    package_name,
    uninstall_plugin,
)

SRC = Path(__file__).resolve().parent.parent / "src"

GREETER = """\
from . import helpers

class Plugin:
    def initialize(self, ctx): pass
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass
    def greet(self, who):
        return helpers.greeting(who)
"""
HELPERS = "def greeting(who):\n    return f'hello, {who}'\n"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def greeter(tmp_path: Path) -> Path:
    """A plugin whose code imports its own module relatively, plus files packages leave out."""
    directory = PluginWriter(tmp_path / "src")(
        "greeter", GREETER, version="1.2.0", files={"helpers.py": HELPERS}
    )
    (directory / "__pycache__").mkdir()
    (directory / "__pycache__" / "plugin.cpython-311.pyc").write_bytes(b"\0compiled")
    (directory / "stale.pyc").write_bytes(b"\0")
    (directory / ".env").write_text("SECRET=1\n", encoding="utf-8")
    (directory / ".git").mkdir()
    (directory / ".git" / "HEAD").write_text("ref: main\n", encoding="utf-8")
    return directory


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


# --------------------------------------------------------------------------- wheels


def test_a_wheel_holds_the_plugin_as_a_package_with_its_entry_point(
    greeter: Path, tmp_path: Path
) -> None:
    wheel = build_wheel(greeter, tmp_path / "dist")

    assert wheel.name == "tether_plugin_greeter-1.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = "tether_plugin_greeter-1.2.0.dist-info"
        assert sorted(n for n in names if not n.startswith(info)) == [
            "tether_plugin_greeter/helpers.py",
            "tether_plugin_greeter/plugin.json",
            "tether_plugin_greeter/plugin.py",
        ]
        assert archive.read(f"{info}/entry_points.txt").decode() == (
            "[tether.plugins]\ngreeter = tether_plugin_greeter.plugin:Plugin\n"
        )
        metadata = archive.read(f"{info}/METADATA").decode()
        assert "Name: tether-plugin-greeter\n" in metadata
        assert "Version: 1.2.0\n" in metadata
        assert "Summary: the greeter test plugin\n" in metadata
        assert "Tag: py3-none-any" in archive.read(f"{info}/WHEEL").decode()
        rows = list(csv.reader(io.StringIO(archive.read(f"{info}/RECORD").decode())))
        assert {row[0] for row in rows} == set(names)
        for name, digest, size in rows:
            if name == f"{info}/RECORD":
                assert (digest, size) == ("", "")
            else:
                data = archive.read(name)
                assert (digest, int(size)) == (_record_hash(data), len(data))
        assert (
            archive.read("tether_plugin_greeter/plugin.json")
            == (greeter / "plugin.json").read_bytes()
        )


def test_the_same_files_give_the_same_wheel(greeter: Path, tmp_path: Path) -> None:
    first = build_wheel(greeter, tmp_path / "a").read_bytes()
    (greeter / "__pycache__" / "other.pyc").write_bytes(b"ignored")
    assert build_wheel(greeter, tmp_path / "b").read_bytes() == first


def test_a_pre_release_version_is_written_the_pep_440_way(tmp_path: Path) -> None:
    directory = PluginWriter(tmp_path)("My.Plugin", "", version="2.0.0-beta.1")
    wheel = build_wheel(directory, tmp_path / "dist")
    assert wheel.name == "tether_plugin_my_plugin-2.0.0b1-py3-none-any.whl"
    assert (package_name("My.Plugin"), distribution_name("My.Plugin")) == (
        "tether_plugin_my_plugin",
        "tether-plugin-my-plugin",
    )


def test_a_version_without_a_pep_440_form_asks_for_a_tarball(tmp_path: Path) -> None:
    directory = PluginWriter(tmp_path)("odd", "", version="1.0.0-alpha.beta")
    with pytest.raises(PackagingError, match=r"version 1\.0\.0-alpha\.beta has no PEP 440 form"):
        build_wheel(directory, tmp_path / "dist")
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())
    assert build_tarball(directory, tmp_path / "dist").name == "odd-1.0.0-alpha.beta.tar.gz"


def test_an_invalid_manifest_builds_nothing(tmp_path: Path) -> None:
    directory = PluginWriter(tmp_path)("broken", "", version="1.0")
    with pytest.raises(ManifestError):
        build_wheel(directory, tmp_path / "dist")
    assert not (tmp_path / "dist").exists()


def _venv_with_tether(where: Path) -> Path:
    """A fresh virtual environment (no pip of its own) that sees this tree's tether and
    the test environment's libraries; its python."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120
    )
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    libraries = sysconfig.get_paths()["purelib"]
    Path(site, "tether-tests.pth").write_text(f"{SRC}\n{libraries}\n", encoding="utf-8")
    return python


DISCOVER_AND_CALL = """\
import asyncio, json, sys
from tether import PluginManager, TetherConfig, default_search_paths, discover

async def main():
    found = discover([]).get("greeter")
    config = TetherConfig.model_validate({"plugins": {"plugins": [{"name": "greeter"}]}})
    manager = PluginManager(config=config)
    [info] = await manager.load_plugins_from_config()
    await manager.initialize_all()
    plugin = manager.get_plugin("greeter")
    print(json.dumps({
        "origin": found.origin,
        "location": found.location,
        "entry": found.manifest.entry,
        "directory": str(found.directory),
        "path": info.path,
        "module": type(plugin).__module__,
        "greeting": plugin.greet("wheel"),
    }))
    await manager.aclose()

asyncio.run(main())
"""


@pytest.mark.slow
def test_a_wheel_installs_with_pip_and_is_discovered_and_loaded(
    greeter: Path, tmp_path: Path
) -> None:
    wheel = build_wheel(greeter, tmp_path / "dist")
    python = _venv_with_tether(tmp_path / "venv")

    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    result = subprocess.run(
        [str(python), "-c", DISCOVER_AND_CALL],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["origin"] == "entry-point"
    assert seen["location"] == "tether-plugin-greeter 1.2.0 (entry point greeter)"
    assert seen["entry"] == "tether_plugin_greeter.plugin:Plugin"
    assert Path(seen["directory"]).name == "tether_plugin_greeter"
    assert Path(seen["directory"], "plugin.json").is_file()
    assert seen["module"] == "tether_plugin_greeter.plugin"
    assert seen["greeting"] == "hello, wheel"
    listed = subprocess.run(
        [str(python), "-c", "from tether.cli import main; main()", "plugins", "list", "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=True,
    )  # fmt: skip
    [row] = [p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "greeter"]
    assert (row["origin"], row["version"]) == ("entry-point", "1.2.0")


@pytest.mark.slow
def test_a_pip_installed_plugin_is_tested_and_demoed_by_name(greeter: Path, tmp_path: Path) -> None:
    """After `pip install`, `python -m tether plugins test NAME` finds the plugin through
    its entry point, and `demo`'s discover step lists it where loading found it."""
    python = _venv_with_tether(tmp_path / "venv")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--quiet", "--disable-pip-version-check", str(build_wheel(greeter, tmp_path / "d"))],
        check=True, timeout=300,
    )  # fmt: skip
    (tmp_path / "app.yaml").write_text("plugins:\n  plugins:\n    - name: greeter\n")

    def tether(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), "-m", "tether", *args],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
        )  # fmt: skip

    tested = tether("plugins", "test", "greeter")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.startswith("greeter 1.2.0\n")
    assert [line.split()[:2] for line in tested.stdout.splitlines()[2:]] == [
        ["load", "ok"], ["initialize", "ok"], ["start", "ok"], ["stop", "ok"], ["cleanup", "ok"]
    ]  # fmt: skip
    demo = tether("demo", "app.yaml")
    assert demo.returncode == 0, demo.stderr
    assert "   greeter 1.2.0  tether-plugin-greeter 1.2.0 (entry point greeter)" in demo.stdout


def _site_with_distribution(site: Path, manifest_entry: str) -> None:
    """An installed distribution whose package holds a manifest with an entry of its own."""
    package = site / "ep_own_entry"
    package.mkdir(parents=True)
    (package / "plugin.py").write_text("class Plugin: pass\n", encoding="utf-8")
    manifest = {"name": "ep-own", "version": "1.0.0", "description": "d", "author": "a"}
    (package / "plugin.json").write_text(
        json.dumps({**manifest, "entry": manifest_entry}), encoding="utf-8"
    )
    info = site / "ep_own-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-own\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(
        "[tether.plugins]\nep-own = ep_own_entry.plugin:Plugin\n"
    )
    files = [
        "ep_own_entry/plugin.py",
        "ep_own_entry/plugin.json",
        "ep_own-1.0.0.dist-info/METADATA",
    ]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files), encoding="utf-8")


def test_an_entry_points_value_is_the_entry_whatever_its_manifest_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _site_with_distribution(tmp_path / "site", "plugin:Plugin")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    found = discover([]).get("ep-own")

    assert found is not None
    assert found.manifest.entry == "ep_own_entry.plugin:Plugin"
    assert "ep_own_entry" not in sys.modules


# --------------------------------------------------------------------------- tarballs


def test_a_tarball_holds_one_directory_named_after_the_plugin(
    greeter: Path, tmp_path: Path
) -> None:
    tarball = build_tarball(greeter, tmp_path / "dist")

    assert tarball.name == "greeter-1.2.0.tar.gz"
    with tarfile.open(tarball) as archive:
        assert sorted(archive.getnames()) == [
            "greeter/helpers.py",
            "greeter/plugin.json",
            "greeter/plugin.py",
        ]
        assert all(m.uid == 0 and m.uname == "" for m in archive.getmembers())


def test_a_tarball_round_trip_installs_the_same_files(greeter: Path, tmp_path: Path) -> None:
    tarball = build_tarball(greeter, tmp_path / "dist")
    root = tmp_path / "installed"

    done = install_plugin(tarball, root)

    assert (done.name, done.version, done.path, done.changed) == (
        "greeter",
        "1.2.0",
        root / "greeter",
        True,
    )
    assert hash_plugin(done.path) == hash_plugin(greeter)
    assert not (done.path / ".env").exists()
    assert [p.name for p in root.iterdir()] == ["greeter"]  # no staging directory left
    [plugin] = discover([SearchPath(root, "user")], entry_points=False).plugins
    assert plugin.directory == root / "greeter"


def test_a_wheel_built_here_installs_as_a_plugin_directory(greeter: Path, tmp_path: Path) -> None:
    wheel = build_wheel(greeter, tmp_path / "dist")
    root = tmp_path / "installed"

    done = install_plugin(wheel, root)

    assert hash_plugin(done.path) == hash_plugin(greeter)

    async def greet() -> str:
        manager = PluginManager(config=TetherConfig())
        await manager.load_plugin(done.path)
        await manager.initialize_all()
        try:
            return str(manager.get_plugin("greeter").greet("tarball"))  # type: ignore[attr-defined]
        finally:
            await manager.aclose()

    assert asyncio.run(greet()) == "hello, tarball"


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_wheel_with_more_than_one_package_is_left_to_pip(greeter: Path, tmp_path: Path) -> None:
    wheel = build_wheel(greeter, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    other = _zip(tmp_path / "other-1.0-py3-none-any.whl", {**members, "otherpkg/x.py": b""})

    with pytest.raises(PackagingError, match="not a plugin wheel") as caught:
        install_plugin(other, tmp_path / "installed")
    assert (
        caught.value.hint == f"install it into the Python environment instead: pip install {other}"
    )
    assert not any((tmp_path / "installed").iterdir())


def test_a_wheel_whose_files_do_not_match_its_record_is_refused(
    greeter: Path, tmp_path: Path
) -> None:
    wheel = build_wheel(greeter, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members["tether_plugin_greeter/helpers.py"] = b"def greeting(who): return 'pwned'\n"
    damaged = _zip(tmp_path / "damaged.whl", members)

    with pytest.raises(
        PackagingError, match=r"damaged: tether_plugin_greeter/helpers\.py does not match RECORD"
    ):
        install_plugin(damaged, tmp_path / "installed")
    assert not any((tmp_path / "installed").iterdir())


def _tarball(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info in members:
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _file(name: str, size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def test_a_tarball_leading_out_of_its_directory_is_refused(tmp_path: Path) -> None:
    bad = _tarball(tmp_path / "bad.tar.gz", [_file("p/plugin.json"), _file("p/../../escaped.py")])
    with pytest.raises(PackagingError, match="unsafe member name"):
        install_plugin(bad, tmp_path / "root")
    assert not (tmp_path / "escaped.py").exists()


def test_a_tarball_holding_a_link_is_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("p/plugin.py")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    bad = _tarball(tmp_path / "link.tar.gz", [_file("p/plugin.json"), link])
    with pytest.raises(PackagingError, match="is a link or a special file"):
        install_plugin(bad, tmp_path / "root")


def test_a_tarball_without_a_plugin_directory_says_what_it_holds(tmp_path: Path) -> None:
    bad = _tarball(tmp_path / "loose.tar.gz", [_file("readme.txt"), _file("a/b.py")])
    with pytest.raises(PackagingError, match=r"it holds a, readme\.txt"):
        install_plugin(bad, tmp_path / "root")


def test_a_file_that_is_no_archive_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(PackagingError, match=r"cannot read .*junk\.tar\.gz"):
        install_plugin(junk, tmp_path / "root")


# --------------------------------------------------------------------------- install, uninstall


def test_the_install_roots_are_searched_by_discovery() -> None:
    searched = {p.origin: p.path for p in default_search_paths()}
    assert install_root("user") == searched["user"] == Path.home() / ".tether" / "plugins"
    assert install_root("system") == searched["system"] == Path("/usr/local/lib/tether/plugins")


def test_install_validates_the_manifest_before_copying(tmp_path: Path) -> None:
    broken = PluginWriter(tmp_path)("broken", "", version="1.0")
    root = tmp_path / "root"
    with pytest.raises(ManifestError, match="semantic version"):
        install_plugin(broken, root)
    assert not root.exists() or not any(root.iterdir())


def test_install_refuses_another_version_without_force(greeter: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    install_plugin(greeter, root)
    newer = PluginWriter(tmp_path / "newer")(
        "greeter", GREETER.replace("greeting(who)", "greeting(who.upper())"), version="2.0.0",
        files={"helpers.py": HELPERS},
    )  # fmt: skip

    with pytest.raises(PackagingError) as caught:
        install_plugin(newer, root)
    assert str(caught.value) == (
        f"not installing 'greeter' 2.0.0: 'greeter' 1.2.0 is installed at {root / 'greeter'}"
    )
    assert caught.value.hint == (
        "pass --force to replace it, or `tether plugins uninstall greeter` first"
    )
    assert hash_plugin(root / "greeter") == hash_plugin(greeter)

    done = install_plugin(newer, root, force=True)
    assert (done.version, done.replaced) == ("2.0.0", "1.2.0")
    assert hash_plugin(root / "greeter") == hash_plugin(newer)
    assert [p.name for p in root.iterdir()] == ["greeter"]


def test_install_refuses_another_copy_of_the_same_version(greeter: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    install_plugin(greeter, root)
    (greeter / "helpers.py").write_text(HELPERS + "# changed\n", encoding="utf-8")
    with pytest.raises(PackagingError, match=r"another copy of 'greeter' 1\.2\.0 is installed"):
        install_plugin(greeter, root)


def test_installing_the_same_files_again_changes_nothing(greeter: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = install_plugin(greeter, root)
    mtime = (root / "greeter" / "plugin.py").stat().st_mtime_ns
    again = install_plugin(build_tarball(greeter, tmp_path / "dist"), root)
    assert (first.changed, again.changed) == (True, False)
    assert (root / "greeter" / "plugin.py").stat().st_mtime_ns == mtime


def test_uninstall_removes_the_plugin_by_its_manifest_name(greeter: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    install_plugin(greeter, root)
    (root / "greeter").rename(root / "renamed-by-hand")

    removed = uninstall_plugin("greeter", root)

    assert (removed.name, removed.version) == ("greeter", "1.2.0")
    assert list(root.iterdir()) == []
    with pytest.raises(
        PackagingError, match=r"'greeter' is not installed in .* \(installed there: none\)"
    ):
        uninstall_plugin("greeter", root)


# --------------------------------------------------------------------------- the CLI


def test_cli_package_install_list_uninstall_in_a_temporary_home(
    greeter: Path, tmp_path: Path
) -> None:
    built = run(
        "plugins", "package", str(greeter), "--format", "tar", "--output", str(tmp_path / "d")
    )
    assert built.exit_code == 0, built.output
    assert f"Built {tmp_path / 'd' / 'greeter-1.2.0.tar.gz'}" in built.stdout

    installed = run("plugins", "install", str(tmp_path / "d" / "greeter-1.2.0.tar.gz"))
    assert installed.exit_code == 0, installed.output
    target = Path.home() / ".tether" / "plugins" / "greeter"
    assert installed.stdout.strip() == f"Installed greeter 1.2.0 at {target}"

    listed = json.loads(run("plugins", "list", "--json").stdout)["plugins"]
    assert [(p["name"], p["origin"]) for p in listed if p["name"] == "greeter"] == [
        ("greeter", "user")
    ]

    again = run("plugins", "install", str(greeter))
    assert again.exit_code == 0
    assert "already installed" in again.stdout

    removed = run("plugins", "uninstall", "greeter", "--user")
    assert removed.exit_code == 0, removed.output
    assert not target.exists()
    missing = run("plugins", "uninstall", "greeter")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: plugin 'greeter' is not installed in ")
    assert "Traceback" not in missing.output


def test_cli_install_refusal_and_force(greeter: Path, tmp_path: Path) -> None:
    root = tmp_path / "project-plugins"
    assert run("plugins", "install", str(greeter), "--dir", str(root)).exit_code == 0
    (greeter / "plugin.json").write_text(
        (greeter / "plugin.json").read_text().replace("1.2.0", "1.3.0"), encoding="utf-8"
    )

    refused = run("plugins", "install", str(greeter), "--dir", str(root))
    assert refused.exit_code == 1
    installed = root / "greeter"
    assert refused.stderr.splitlines() == [
        f"Error: not installing 'greeter' 1.3.0: 'greeter' 1.2.0 is installed at {installed}",
        "Hint: pass --force to replace it, or `tether plugins uninstall greeter` first",
    ]
    forced = run("plugins", "install", str(greeter), "--dir", str(root), "--force")
    assert forced.exit_code == 0
    assert "(replaced 1.2.0)" in forced.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plugins", "package", "no-such-dir"], "does not exist"),
        (["plugins", "package", ".", "--format", "zip"], "'zip' is not one of"),
        (["plugins", "install", "no-such.whl"], "does not exist"),
        (["plugins", "install", ".", "--system", "--dir", "x"], "give --system or --dir, not both"),
        (["plugins", "uninstall", "a/b"], "is not a plugin name"),
    ],
    ids=["package-missing", "package-format", "install-missing", "system-and-dir", "bad-name"],
)
def test_cli_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_cli_package_of_a_directory_without_a_manifest_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run("plugins", "package", str(tmp_path / "empty"), "--output", str(tmp_path / "d"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output
    assert not (tmp_path / "d").exists()


def test_cli_install_of_a_foreign_wheel_says_to_use_pip(tmp_path: Path) -> None:
    wheel = _zip(
        tmp_path / "thing-1.0-py3-none-any.whl",
        {"thing/__init__.py": b"", "thing-1.0.dist-info/RECORD": b""},
    )
    result = run("plugins", "install", str(wheel))
    assert result.exit_code == 1
    assert (
        f"Hint: install it into the Python environment instead: pip install {wheel}"
        in result.stderr
    )
    assert "Traceback" not in result.output


def test_package_help_mentions_what_is_left_out() -> None:
    text = run("plugins", "package", "--help").stdout
    assert "__pycache__" in text
    assert "--format [wheel|tar]" in text


def test_a_wheel_of_a_manifest_without_entry_points_at_the_conventional_class(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "src" / "hello"
    directory.mkdir(parents=True)
    (directory / "plugin.yaml").write_text(
        "name: hello\nversion: 1.0.0\ndescription: d\nauthor: a\n", encoding="utf-8"
    )
    (directory / "plugin.py").write_text(
        "import tether\n\nclass Hello(tether.Plugin):\n    pass\n", encoding="utf-8"
    )
    wheel = build_wheel(directory, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        points = archive.read("tether_plugin_hello-1.0.0.dist-info/entry_points.txt").decode()
    assert points == "[tether.plugins]\nhello = tether_plugin_hello.plugin:Hello\n"
