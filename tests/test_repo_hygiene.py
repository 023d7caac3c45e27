"""Repository rules: ruff is clean, the host never imports a plugin, every plugin is installable."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PLUGINS_DIR = REPO_ROOT / "plugins"
ENTRY_POINT_GROUP = "c2d.engines"

# Plugin packages the host must never import, plus whatever package a plugin folder holds.
KNOWN_PLUGIN_PACKAGES = {"c2d_external_stub", "c2d_docker_engine", "c2d_k8s_engine", "plugins"}


def plugin_packages() -> set[str]:
    found = set(KNOWN_PLUGIN_PACKAGES)
    for _, pyproject in engine_plugins():
        for target in pyproject["project"]["entry-points"][ENTRY_POINT_GROUP].values():
            found.add(target.split(":")[0].strip().split(".")[0])
    return found


def engine_plugins() -> list[tuple[Path, dict]]:
    """(plugin folder, parsed pyproject) for every plugin declaring a c2d.engines entry point."""
    plugins = []
    for pyproject in sorted(PLUGINS_DIR.glob("*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        if data.get("project", {}).get("entry-points", {}).get(ENTRY_POINT_GROUP):
            plugins.append((pyproject.parent, data))
    return plugins


ENGINE_PLUGINS = engine_plugins()


def test_ruff_check() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"ruff check . failed:\n{result.stdout}{result.stderr}"


# What must type-check clean: every mypy error in these files fails the suite. mypy itself checks
# all the packages [tool.mypy] names (run `mypy` to see every error); this is the whole tree.
MYPY_CLEAN = ("host/", "pods/", "sdk/c2d/", "plugins/")
MYPY_ERROR = re.compile(r"^(?P<path>[^:\s]+\.pyi?):\d+(?::\d+)?: error: ", re.MULTILINE)


def test_mypy_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],  # the packages and the options of [tool.mypy]
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    # 0: clean, 1: errors were found; anything else (a crash, a bad config) is a failure of its own.
    assert result.returncode in (0, 1), f"mypy did not run (exit {result.returncode}):\n{output}"
    covered = [
        line
        for line in output.splitlines()
        if (m := MYPY_ERROR.match(line)) and m["path"].startswith(MYPY_CLEAN)
    ]
    assert not covered, "mypy errors in files that must type-check clean:\n" + "\n".join(covered)


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for every absolute import, plus import_module/__import__ of a literal."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_host_never_imports_a_plugin() -> None:
    forbidden = plugin_packages()
    offences = []
    for path in sorted((REPO_ROOT / "host").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, module in _imported_modules(tree):
            if module.split(".")[0] in forbidden:
                offences.append(f"{path.relative_to(REPO_ROOT)}:{line}: imports {module}")
    assert not offences, (
        "host/ must reach engines only through entry points and processes, never by import:\n"
        + "\n".join(offences)
    )


def test_there_is_an_engine_plugin() -> None:
    assert engine_plugins(), (
        f"no plugins/*/pyproject.toml declares [project.entry-points.{ENTRY_POINT_GROUP!r}]"
    )


@pytest.mark.parametrize(
    ("folder", "pyproject"), ENGINE_PLUGINS, ids=[folder.name for folder, _ in ENGINE_PLUGINS]
)
def test_engine_plugin_is_installable(folder: Path, pyproject: dict) -> None:
    project = pyproject["project"]
    assert project.get("name"), f"{folder.name}: pyproject has no project name"
    assert pyproject.get("build-system", {}).get("build-backend"), f"{folder.name}: no build-system"
    for name, target in project["entry-points"][ENTRY_POINT_GROUP].items():
        module = target.split(":")[0].strip()
        relative = Path(*module.split("."))
        candidates = [folder / relative.with_suffix(".py"), folder / relative / "__init__.py"]
        tried = " nor ".join(str(c.relative_to(REPO_ROOT)) for c in candidates)
        assert any(c.is_file() for c in candidates), (
            f"{folder.name}: entry point {name} = {target!r} names {module}, but neither {tried} exists"
        )


@pytest.mark.parametrize(
    ("folder", "pyproject"), ENGINE_PLUGINS, ids=[folder.name for folder, _ in ENGINE_PLUGINS]
)
def test_engine_plugin_is_in_requirements_dev(folder: Path, pyproject: dict) -> None:
    # Installed the way a third party's plugin would be (editable here), so tests and CI see it.
    wanted = f"./plugins/{folder.name}"
    text = (REPO_ROOT / "requirements-dev.txt").read_text()
    assert re.search(rf"^-e\s+{re.escape(wanted)}/?(\[|\s|$)", text, re.MULTILINE), (
        f"add '-e {wanted}' to requirements-dev.txt"
    )


@pytest.mark.parametrize("path", ["me.key", "out/shout.txt", ".c2d/node_key"])
def test_what_the_quick_start_writes_is_ignored(path: str) -> None:
    # The README's quick start writes a key and results into the checkout's root.
    result = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", path],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"{path} is not ignored by .gitignore"
    assert path.split("/")[0] in {
        line.strip().strip("/") for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
    }, f"{path} is not in .dockerignore"


def test_readme_lists_every_cli_exit_code() -> None:
    source = (REPO_ROOT / "sdk" / "c2d" / "cli" / "main.py").read_text()
    codes = {int(code) for code in re.findall(r"^EXIT_\w+ = (\d+)$", source, re.MULTILINE)}
    readme = (REPO_ROOT / "README.md").read_text()
    listed = re.search(r"Exit codes: (.*?)\n\n", readme, re.DOTALL)
    assert listed and codes, "README.md has no 'Exit codes:' list, or main.py no EXIT_ constants"
    missing = [code for code in sorted(codes | {0, 1}) if not re.search(rf"\b{code}\b", listed[1])]
    assert not missing, f"README's exit codes omit {missing}"


def test_tox_is_a_test_extra() -> None:
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.match(r"tox\b", requirement) for requirement in extras["test"])


def test_readme_installs_the_sdk_from_the_checkout() -> None:
    # c2d-sdk is not published: every `pip install` of it in README.md names the checkout's sdk/.
    readme = (REPO_ROOT / "README.md").read_text()
    assert "c2d-sdk[" not in readme, "c2d-sdk is not on PyPI: install it as './sdk[EXTRA]'"
    extras = tomllib.loads((REPO_ROOT / "sdk" / "pyproject.toml").read_text())["project"]
    for extra in re.findall(r"pip install '\./sdk\[(\w+)\]'", readme):
        assert extra in extras.get("optional-dependencies", {}), f"sdk has no [{extra}] extra"


def test_readme_offline_busybox_recipe_names_what_exists() -> None:
    # README's offline recipe for busybox:1.36 calls tests/docker_images.busybox_image(client, name).
    import inspect

    import docker_images

    readme = (REPO_ROOT / "README.md").read_text()
    assert "docker_images.busybox_image(docker.from_env(), 'busybox:1.36')" in readme
    assert list(inspect.signature(docker_images.busybox_image).parameters)[:2] == ["client", "name"]
