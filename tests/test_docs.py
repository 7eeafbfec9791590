"""The documentation: README.md and the MkDocs site in docs/ build without a broken link, list every page,
and every `segrun` command they show parses with segrun's own argument parser and names specs that exist."""
import contextlib
import io
import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from segrun.cli import COMMANDS, _parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 160


def _doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _fenced_lines(path: Path):
    """(line number, text) of every line inside a fenced code block (``` or ~~~) of a Markdown file."""
    fence = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            match = re.match(r"(`{3,}|~{3,})", stripped)
            if match:
                fence = match.group(1)
            continue
        if stripped.startswith(fence) and not stripped.lstrip(fence[0]).strip():
            fence = None
            continue
        yield number, line


def _commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of every command line in the file's code blocks that begins with `segrun `
    (after an optional `$ ` prompt), with `\\` continuations joined."""
    found, pending, start = [], None, 0
    for number, line in _fenced_lines(path):
        text = line.strip()
        if pending is not None:
            pending += " " + text
        else:
            if text.startswith("$ "):
                text = text[2:].lstrip()
            if not text.startswith("segrun "):
                continue
            pending, start = text, number
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        found.append((start, pending))
        pending = None
    if pending is not None:
        found.append((start, pending))
    return found


def _argv(command: str) -> list[str]:
    """The arguments after `segrun`, as a POSIX shell splits them (quotes removed, `# comments` dropped)."""
    return shlex.split(command, comments=True)[1:]


def _parse(argv: list[str]) -> str | None:
    """None if segrun's parser accepts argv as `segrun.cli.main` would dispatch it, else argparse's message."""
    argv = list(argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "train")  # `segrun SPEC ...` is `segrun train SPEC ...`, as in main()
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args = _parser(argv).parse_args(argv)
    except SystemExit as exit_:
        if exit_.code in (0, None):  # --help
            return None
        return errors.getvalue().strip().splitlines()[-1] if errors.getvalue().strip() else f"exit {exit_.code}"
    if args.command is None:
        return "no command"
    return None


def _expand_braces(text: str) -> list[str]:
    """Shell brace expansion of {a,b} groups: specs/x_{a,b}.toml -> specs/x_a.toml, specs/x_b.toml."""
    parts = re.split(r"(\{[^{}]*\})", text)
    choices = [part[1:-1].split(",") if part.startswith("{") and "," in part else [part] for part in parts]
    return ["".join(combination) for combination in itertools.product(*choices)]


SPEC_PATH = re.compile(r"specs/[A-Za-z0-9_./{},*-]*\.toml")


def _spec_paths(command: str) -> list[str]:
    """Every path into specs/ ending in .toml that the command names, as an argument or a KEY=VALUE value."""
    paths = []
    for argument in _argv(command):
        paths += [match.group(0) for match in SPEC_PATH.finditer(argument)]
    return paths


def _missing(path: str) -> bool:
    """True if the path (braces expanded, `*` as a glob) names no file of the repository."""
    for expanded in _expand_braces(path):
        if "*" in expanded:
            if not list(ROOT.glob(expanded)):
                return True
        elif not (ROOT / expanded).is_file():
            return True
    return False


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def _mkdocs_config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def test_site_builds_strictly(tmp_path):
    """`mkdocs build --strict` fails on a link to a missing page or anchor and on a page left out of the nav
    (mkdocs.yml's validation settings make those warnings)."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


def test_doc_commands_parse_and_name_existing_specs():
    commands = [(path, number, command) for path in _doc_files() for number, command in _commands(path)]
    assert len(commands) >= 20, f"only {len(commands)} segrun commands found in the documentation's code blocks"
    problems = []
    for path, number, command in commands:
        where = f"{path.relative_to(ROOT)}:{number}"
        try:
            argv = _argv(command)
        except ValueError as error:
            problems.append(f"{where}: {command!r}: cannot be split as a shell line ({error})")
            continue
        message = _parse(argv)
        if message is not None:
            problems.append(f"{where}: {command!r}: {message}")
        problems += [f"{where}: {command!r}: {spec} does not exist"
                     for spec in _spec_paths(command) if _missing(spec)]
    # Paths into specs/ named anywhere else in the text (inline code, tables): placeholders with `...` and the
    # made-up file of the error examples (`segrun: error: specs/x.toml: ...`) aside.
    command_lines = {(path, number) for path, number, _ in commands}  # checked above
    for path in _doc_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if (path, number) in command_lines or line.lstrip().startswith("segrun: error:"):
                continue
            problems += [f"{path.relative_to(ROOT)}:{number}: {spec} does not exist"
                         for spec in (match.group(0) for match in SPEC_PATH.finditer(line))
                         if "..." not in spec and _missing(spec)]
    assert not problems, "\n".join(problems)


def test_readme_is_short_and_every_page_is_in_the_nav():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES} (move the rest to docs/)"
    nav = _nav_pages(_mkdocs_config().get("nav", []))
    pages = sorted(str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md"))
    missing = [page for page in pages if page not in nav]
    assert not missing, f"docs pages not listed in mkdocs.yml's nav: {missing}"
    absent = [page for page in nav if not (DOCS / page).is_file()]
    assert not absent, f"mkdocs.yml's nav lists pages that do not exist: {absent}"
