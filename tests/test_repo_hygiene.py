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
KNOWN_PLUGIN_PACKAGES = {
    "c2d_external_stub",
    "c2d_docker_engine",
    "c2d_k8s_engine",
    "c2d_bacalhau_engine",
    "plugins",
}


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


# Links in the documentation ---------------------------------------------------------------------

# Inline links and images, [text](target "title"), and reference definitions, [name]: target.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
FENCED_CODE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)  # a scheme, a host, an anchor


def documentation_files() -> list[Path]:
    """README.md, docs/*.md (tracked yet or not) and every other Markdown file the repository tracks."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "*.md"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    found = {REPO_ROOT / name for name in listed.split("\0") if name}
    found |= {REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")}
    return sorted(path for path in found if path.is_file())


def relative_links(markdown: str) -> list[str]:
    """The link targets that name a path (code blocks and spans are not links), anchors cut off."""
    prose = INLINE_CODE.sub("", FENCED_CODE.sub("", markdown))
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    return [target.split("#", 1)[0] for target in targets if not EXTERNAL.match(target)]


DOCUMENTATION = documentation_files()


def test_documentation_files_are_found() -> None:
    names = {path.relative_to(REPO_ROOT).as_posix() for path in DOCUMENTATION}
    assert {"README.md", "docs/security.md", "docs/architecture.md"} <= names


@pytest.mark.parametrize(
    "document", DOCUMENTATION, ids=[p.relative_to(REPO_ROOT).as_posix() for p in DOCUMENTATION]
)
def test_every_relative_link_names_a_file_inside_the_repository(document: Path) -> None:
    # A link outside the checkout (../shared/...) works on one machine only; one to a file that
    # moved works nowhere. Both fail here, with the line to fix.
    broken = []
    for target in relative_links(document.read_text()):
        resolved = (document.parent / target).resolve()
        if not resolved.is_relative_to(REPO_ROOT):
            broken.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{target} (no such file)")
    assert not broken, f"{document.relative_to(REPO_ROOT)} links to: " + ", ".join(broken)


def test_link_finder_sees_inline_and_reference_links_but_not_code() -> None:
    markdown = (
        'See [the design](../shared/DESIGN.md), ![a](img/x.png "t") and [web](https://x.org).\n'
        "[ref]: docs/a.md#part\n"
        "`[not](code.md)`\n```\n[nor](block.md)\n```\n[anchor](#here)\n"
    )
    assert relative_links(markdown) == ["../shared/DESIGN.md", "img/x.png", "docs/a.md"]


# docs/architecture.md stays true to the code ------------------------------------------------------

ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"
CITED_TEST = re.compile(r"\b(tests/[\w/]+\.py)::(test_\w+)")


def test_every_test_the_documentation_cites_exists() -> None:
    # The pages name the tests that prove what they say (path::name): a renamed test fails here.
    missing = []
    for document in DOCUMENTATION:
        for path, name in CITED_TEST.findall(document.read_text()):
            source = REPO_ROOT / path
            defined = source.is_file() and re.search(
                rf"^\s*(?:async\s+)?def {name}\(", source.read_text(), re.MULTILINE
            )
            if not defined:
                missing.append(f"{document.relative_to(REPO_ROOT)}: {path}::{name}")
    assert not missing, "cited tests that do not exist:\n" + "\n".join(missing)


def module_map(package: str) -> set[str]:
    """The names in the first column of docs/architecture.md's table for ``package`` (host, pods)."""
    section = re.search(
        rf"^### `{package}/`.*?$(.*?)(?=^#)", ARCHITECTURE.read_text() + "\n#", re.MULTILINE | re.DOTALL
    )
    assert section, f"docs/architecture.md has no '### `{package}/`' module map"
    first_cells = re.findall(r"^\|([^|]*)\|", section[1], re.MULTILINE)
    return {name for cell in first_cells for name in re.findall(r"`([^`]+)`", cell)}


@pytest.mark.parametrize("package", ["host", "pods"])
def test_the_module_map_names_every_module_and_only_those(package: str) -> None:
    root = REPO_ROOT / package
    modules = {
        path.relative_to(root).with_suffix("").as_posix()
        for path in root.rglob("*.py")
        if path.name != "__init__.py"
    }
    named = module_map(package)
    # A subpackage may be one row ("image/") instead of one row per module.
    missing = sorted(m for m in modules if m not in named and f"{m.split('/')[0]}/" not in named)
    assert not missing, f"docs/architecture.md's {package}/ map lacks {missing}"
    stale = sorted(
        name
        for name in named
        if not ((root / f"{name}.py").is_file() or (name.endswith("/") and (root / name).is_dir()))
    )
    assert not stale, f"docs/architecture.md's {package}/ map names what {package}/ does not have: {stale}"
