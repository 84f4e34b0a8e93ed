"""The loader: private namespaces per load, entry resolution, the contract, import errors."""

from __future__ import annotations

import sys

import pytest

from helpers import PluginWriter, line_of
from tether._loader import ROOT_PACKAGE, load_code, loaded_namespaces, unload_code
from tether._manifest import load_manifest
from tether.errors import InterfaceError, PluginImportError, PluginLoadError

PLAIN = """\
class Plugin:
    def initialize(self, ctx):
        pass

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""


@pytest.fixture
def make_plugin(tmp_path):
    return PluginWriter(tmp_path / "plugins")


@pytest.fixture
def load(request):
    """Load a plugin directory; every load is unloaded again after the test."""
    loaded = []

    def _load(directory):
        code = load_code(load_manifest(directory))
        loaded.append(code)
        return code

    yield _load
    for code in loaded:
        unload_code(code)


def _modules_of(namespace):
    return {n for n in sys.modules if n == namespace or n.startswith(namespace + ".")}


# --------------------------------------------------------------------------- namespaces

GREETER = """\
from .words import WORD
from . import words


class Plugin:
    def initialize(self, ctx):
        pass

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass

    def greet(self):
        return f"{WORD} from {words.VERSION}"
"""


def _greeter(make_plugin, version, word):
    return make_plugin(
        "greeter",
        GREETER,
        version=version,
        files={"words.py": f"WORD = {word!r}\nVERSION = {version!r}\n"},
    )


def test_two_versions_of_one_plugin_coexist(make_plugin, load):
    old = load(_greeter(make_plugin, "1.0.0", "hello"))
    new = load(_greeter(make_plugin, "2.0.0", "bonjour"))

    assert old.namespace != new.namespace
    assert old.module is not new.module
    assert type(old.instance) is not type(new.instance)
    assert old.instance.greet() == "hello from 1.0.0"
    assert new.instance.greet() == "bonjour from 2.0.0"
    assert old.module.__name__ == f"{old.namespace}.plugin"
    assert old.namespace.startswith(f"{ROOT_PACKAGE}.greeter_1_0_0_")
    assert new.namespace.startswith(f"{ROOT_PACKAGE}.greeter_2_0_0_")
    assert sys.modules[f"{old.namespace}.words"].WORD == "hello"
    assert sys.modules[f"{new.namespace}.words"].WORD == "bonjour"
    assert {old.namespace, new.namespace} <= set(loaded_namespaces())


def test_the_same_directory_loaded_twice_gets_two_namespaces(make_plugin, load):
    directory = _greeter(make_plugin, "1.0.0", "hi")
    first, second = load(directory), load(directory)
    assert first.namespace != second.namespace
    assert first.module is not second.module


def test_unload_code_removes_exactly_the_modules_of_one_load(make_plugin, load):
    old = load(_greeter(make_plugin, "1.0.0", "hello"))
    new = load(_greeter(make_plugin, "2.0.0", "bonjour"))
    assert _modules_of(old.namespace) == {
        old.namespace,
        f"{old.namespace}.plugin",
        f"{old.namespace}.words",
    }

    unload_code(old)

    assert _modules_of(old.namespace) == set()
    assert old.namespace not in loaded_namespaces()
    assert not hasattr(sys.modules[ROOT_PACKAGE], old.namespace.rpartition(".")[2])
    assert len(_modules_of(new.namespace)) == 3
    assert old.instance.greet() == "hello from 1.0.0"  # live objects keep working
    unload_code(new)
    assert _modules_of(new.namespace) == set()
    unload_code(new)  # twice is harmless


def test_plugin_modules_do_not_leak_under_their_real_names(make_plugin, load):
    load(_greeter(make_plugin, "1.0.0", "hello"))
    assert "words" not in sys.modules
    assert "plugin" not in sys.modules


def test_relative_imports_of_modules_and_subpackages(make_plugin, load):
    code = """\
        from . import helpers
        from .helpers import double
        from .sub.deep import TRIPLE
        from .sub import deep


        class Plugin:
            def initialize(self, ctx):
                pass

            def start(self):
                pass

            def stop(self):
                pass

            def cleanup(self):
                pass

            def compute(self, n):
                return helpers.double(n) + double(n) + TRIPLE(n) + deep.TRIPLE(n)
    """
    directory = make_plugin(
        "relative",
        code,
        files={
            "helpers.py": "def double(n):\n    return 2 * n\n",
            "sub/__init__.py": "",
            "sub/deep.py": (
                "from ..helpers import double\n\n\ndef TRIPLE(n):\n    return double(n) + n\n"
            ),
        },
    )
    loaded = load(directory)
    assert loaded.instance.compute(1) == 2 + 2 + 3 + 3
    assert f"{loaded.namespace}.sub.deep" in sys.modules


# --------------------------------------------------------------------------- entry


def _indent(text):
    lines = text.splitlines(keepends=True)
    return "".join(f"    {line}" if line.strip() else line for line in lines)


ENTRIES = {
    "class": ("plugin:Plugin", PLAIN),
    "factory": ("plugin:create", PLAIN + "\n\ndef create():\n    return Plugin()\n"),
    "instance": ("plugin:INSTANCE", PLAIN + "\n\nINSTANCE = Plugin()\n"),
    "nested-class": ("plugin:Holder.Plugin", "class Holder:\n" + _indent(PLAIN)),
    "dotted-module": ("pkg.impl:Plugin", PLAIN),
    "base-class": (
        "plugin:Mine",
        "import tether\n\n\nclass Mine(tether.Plugin):\n    pass\n",
    ),
}


@pytest.mark.parametrize("kind", list(ENTRIES))
def test_entry_kinds(make_plugin, load, kind):
    entry, code = ENTRIES[kind]
    files = {"pkg/__init__.py": ""} if kind == "dotted-module" else {}
    loaded = load(make_plugin(f"entry-{kind}", code, entry=entry, files=files))
    for method in ("initialize", "start", "stop", "cleanup"):
        assert callable(getattr(loaded.instance, method))
    assert not isinstance(loaded.instance, type)
    if kind == "instance":
        assert loaded.instance is loaded.module.INSTANCE
    assert loaded.module.__name__ == f"{loaded.namespace}.{entry.partition(':')[0]}"


def test_a_factory_is_called_once_per_load(make_plugin, load):
    code = PLAIN + "\n\nCALLS = []\n\n\ndef create():\n    CALLS.append(1)\n    return Plugin()\n"
    loaded = load(make_plugin("factory", code, entry="plugin:create"))
    assert loaded.module.CALLS == [1]


def test_missing_attribute(make_plugin):
    directory = make_plugin("noattr", PLAIN, entry="plugin:Nope")
    before = loaded_namespaces()
    with pytest.raises(PluginLoadError) as caught:
        load_code(load_manifest(directory))
    assert str(caught.value) == (
        "plugin 'noattr': entry 'plugin:Nope' not found: module 'plugin' has no attribute 'Nope'"
    )
    assert caught.value.plugin == "noattr"
    assert loaded_namespaces() == before  # the failed load left nothing behind


def _without(method):
    lines = PLAIN.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if f"def {method}(" in line)
    return "".join(lines[:start] + lines[start + 3 :])


@pytest.mark.parametrize("method", ["initialize", "start", "stop", "cleanup"])
@pytest.mark.parametrize(
    ("kind", "entry", "suffix"),
    [
        ("class", "plugin:Plugin", ""),
        ("factory", "plugin:create", "\n\ndef create():\n    return Plugin()\n"),
        ("instance", "plugin:INSTANCE", "\n\nINSTANCE = Plugin()\n"),
    ],
    ids=["class", "factory", "instance"],
)
def test_missing_lifecycle_method(make_plugin, method, kind, entry, suffix):
    directory = make_plugin(f"lacks-{method}-{kind}", _without(method) + suffix, entry=entry)
    before = loaded_namespaces()
    with pytest.raises(InterfaceError) as caught:
        load_code(load_manifest(directory))
    error = caught.value
    assert str(error) == f"plugin does not implement required interface: missing method {method}"
    assert isinstance(error, TypeError)
    assert isinstance(error, PluginLoadError)
    assert error.missing == method
    assert entry in error.hint
    assert loaded_namespaces() == before


def test_lifecycle_attribute_that_is_not_callable(make_plugin):
    code = PLAIN + "\n\nclass Broken(Plugin):\n    stop = None\n"
    with pytest.raises(InterfaceError, match="missing method stop"):
        load_code(load_manifest(make_plugin("broken", code, entry="plugin:Broken")))


def test_factory_raising_names_the_file_and_line(make_plugin):
    code = PLAIN + "\n\ndef create():\n    raise RuntimeError('no database')  # raise here\n"
    directory = make_plugin("factory-fails", code, entry="plugin:create")
    line = line_of(directory / "plugin.py", "# raise here")
    with pytest.raises(PluginLoadError) as caught:
        load_code(load_manifest(directory))
    message = str(caught.value)
    assert message.startswith(
        "plugin 'factory-fails': creating 'plugin:create' raised RuntimeError: no database"
    )
    assert f"({directory / 'plugin.py'}, line {line})" in message
    assert isinstance(caught.value.__cause__, RuntimeError)


# --------------------------------------------------------------------------- import errors


def test_error_raised_while_importing_names_file_and_line(make_plugin):
    code = "import os\n\nVALUE = 1\nraise RuntimeError('broken at import')  # boom\n"
    directory = make_plugin("import-fails", code)
    before = loaded_namespaces()
    with pytest.raises(PluginImportError) as caught:
        load_code(load_manifest(directory))
    error = caught.value
    assert error.plugin == "import-fails"
    assert error.file == directory / "plugin.py"
    assert error.line == 4
    assert error.cause_type == "RuntimeError"
    assert str(error) == (
        "failed to import plugin 'import-fails': RuntimeError: broken at import "
        f"({directory / 'plugin.py'}, line 4)"
    )
    assert isinstance(error.__cause__, RuntimeError)
    assert loaded_namespaces() == before


def test_error_in_a_helper_module_points_at_the_helper(make_plugin):
    directory = make_plugin(
        "helper-fails",
        "from . import helper\n" + PLAIN,
        files={"helper.py": "\n\nvalue = 1 / 0\n"},
    )
    with pytest.raises(PluginImportError) as caught:
        load_code(load_manifest(directory))
    assert (caught.value.file, caught.value.line) == (directory / "helper.py", 3)
    assert "ZeroDivisionError: division by zero" in str(caught.value)


def test_syntax_error_names_file_and_line(make_plugin):
    directory = make_plugin("syntax", PLAIN + "\n\ndef broken(:\n    pass\n")
    line = line_of(directory / "plugin.py", "def broken(")
    with pytest.raises(PluginImportError) as caught:
        load_code(load_manifest(directory))
    error = caught.value
    assert error.cause_type == "SyntaxError"
    assert error.file == directory / "plugin.py"
    assert error.line == line
    assert str(error).startswith("failed to import plugin 'syntax': SyntaxError: ")
    assert str(error).endswith(f"({directory / 'plugin.py'}, line {line})")


def test_missing_third_party_module(make_plugin):
    code = "import json\nimport tether_no_such_module_here  # needs a package\n" + PLAIN
    directory = make_plugin("needs-package", code)
    with pytest.raises(PluginImportError) as caught:
        load_code(load_manifest(directory))
    error = caught.value
    assert error.cause_type == "ModuleNotFoundError"
    assert "No module named 'tether_no_such_module_here'" in str(error)
    assert (error.file, error.line) == (directory / "plugin.py", 2)


def test_absolute_import_of_a_sibling_fails_with_a_hint(make_plugin):
    directory = make_plugin(
        "absolute", "import siblingmod\n" + PLAIN, files={"siblingmod.py": "X = 1\n"}
    )
    with pytest.raises(PluginImportError) as caught:
        load_code(load_manifest(directory))
    assert "No module named 'siblingmod'" in str(caught.value)
    assert "from . import" in caught.value.hint


def test_missing_entry_module_names_the_module_and_directory(make_plugin):
    directory = make_plugin(
        "no-entry-module", None, entry="nomodule:Plugin", files={"other.py": PLAIN}
    )
    with pytest.raises(PluginLoadError) as caught:
        load_code(load_manifest(directory))
    message = str(caught.value)
    assert "frozen" not in message
    assert ROOT_PACKAGE not in message
    assert "nomodule" in message
    assert str(directory) in message


def test_a_missing_module_gets_the_hint_that_fits_it(tmp_path):
    """The plugin's own module imported absolutely is told to import relatively; a
    library that is not installed is told to install it."""
    write = PluginWriter(tmp_path)
    own = write(
        "own",
        "import buckets\n\nclass Plugin:\n    pass\n",
        directory="own",
        files={"buckets.py": "X = 1\n"},
    )
    library = write(
        "lib", "import not_installed_lib_xyz\n\nclass Plugin:\n    pass\n", directory="lib"
    )
    with pytest.raises(PluginImportError) as own_error:
        load_code(load_manifest(own))
    assert "'buckets' is one of the plugin's own modules" in own_error.value.hint
    assert "from . import buckets" in own_error.value.hint
    with pytest.raises(PluginImportError) as library_error:
        load_code(load_manifest(library))
    assert "'not_installed_lib_xyz' is not installed" in library_error.value.hint
