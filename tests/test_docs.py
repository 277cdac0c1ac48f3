"""The docs and the program agree: every command, key, link and figure the docs give is checked.

What is read: README.md, docs/*.md, gitops/README.md, app/README.md (parsed with markdown-it-py,
a CommonMark parser: fenced blocks, inline code, links, headings) and the comments of the
shipped Pulumi.<stack>.yaml files. Shell in ```sh blocks, in inline code that starts with a
command, and in those comments is parsed with bashlex (a bash parser: quoting, pipes,
redirections, `$(...)` and `<(...)`), after `<placeholders>` are turned into plain words.

What is checked, each against the program, not a hand list:
* `pulumi config set`: the key is declared (docs/stack.schema.json, generated from
  stacks/config.py and held current by tests/test_config_reference.py), `--path` is given
  exactly when the key is nested (without it Pulumi stores a top-level key literally named
  `a.b`, which the config refuses), `--secret` exactly for the keys declared secret, the
  stack named exists, and a concrete value validates against the key's schema in the form
  Pulumi stores it (`--path` turns `true`/`false` and integers into YAML booleans and numbers);
* every key path quoted in inline code (`aks-platform:…`, `cluster.…`, `addons.…`, …) exists,
  with its value when one is given (`addons.aso.subscriptionScope: true`), and every YAML
  config example validates against the schema;
* every `make` command parses with make itself (`make -n`): the target exists, and `STACK=`
  names a shipped stack;
* every relative link points to an existing file, and to an existing heading where it names
  an anchor (GitHub's slugs); every repository file named in inline code exists;
* the README's stack table lists exactly the shipped stack files, and its outputs list exactly
  the outputs the shipped stacks export;
* the documented offline commands run: `make plan STACK=…` / `python -m offline.plan …` and
  `make policy` (`python -m offline.policy_check`) through their real `main`, on the evaluations the
  session already holds (tests/conftest.py `shipped`), and `python -m stacks.reference
  --check` (`make docs`);
* the figures in docs/testing.md (resources and modelled first `up` per stack) are recomputed
  from those evaluations with offline/bench.py's model.

Not checked here: commands that need Azure, a cluster, Docker or kind (their flags were checked
against the tools' documentation by hand), `make bench` itself (tests/test_bench.py runs its
`main` on one stack), and prose.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import bashlex
import pytest
import yaml
from jsonschema import Draft202012Validator
from markdown_it import MarkdownIt

from offline import plan as offline_plan
from offline.bench import deployment_model
from offline import policy_check
from stacks import reference
from stacks.config import secret_fields
from stacks.problems import PROJECT

ROOT = reference.ROOT
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "gitops" / "README.md", ROOT / "app" / "README.md"]
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
STACKS = [p.name[len("Pulumi.") : -len(".yaml")] for p in STACK_FILES]
SCHEMA = json.loads(reference.SCHEMA.read_text())
CONFIG_PROPERTIES = SCHEMA["properties"]["config"]["properties"]
TOP_LEVEL = {key.split(":", 1)[1] for key in CONFIG_PROPERTIES}
SECRET_KEYS = set(secret_fields())

SHELL_FENCES = {"sh", "bash", "shell", "console"}
# `<placeholder>` and `…` in a command: one word, never a redirection.
PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9 _.,:/@-]*)>|…")
MARK = "«"


def _words(text: str) -> str:
    return PLACEHOLDER.sub(lambda m: f"{MARK}{(m.group(1) or 'any').replace(' ', '_')}»", text)


def has_placeholder(word: str) -> bool:
    return MARK in word


# --- reading the docs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Snippet:
    where: str  # file:line
    text: str


@functools.lru_cache(maxsize=None)
def tokens(path: Path) -> list[Any]:
    return MarkdownIt("commonmark").enable("table").parse(path.read_text())


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def fences(path: Path, infos: set[str]) -> Iterator[Snippet]:
    for tok in tokens(path):
        if tok.type == "fence" and tok.info.strip().split(" ")[0] in infos:
            yield Snippet(f"{_rel(path)}:{tok.map[0] + 2}", tok.content)


def inline_code(path: Path) -> Iterator[Snippet]:
    for tok in tokens(path):
        if tok.type == "inline":
            for child in tok.children or ():
                if child.type == "code_inline":
                    yield Snippet(f"{_rel(path)}:{tok.map[0] + 1}", child.content)


def links(path: Path) -> Iterator[Snippet]:
    for tok in tokens(path):
        for child in (tok.children or ()) if tok.type == "inline" else ():
            if child.type in ("link_open", "image"):
                href = child.attrs.get("href") or child.attrs.get("src")
                yield Snippet(f"{_rel(path)}:{tok.map[0] + 1}", str(href))


def github_anchors(path: Path) -> set[str]:
    """The heading anchors GitHub renders (github-slugger: lowercase, punctuation dropped, spaces to -)."""
    seen: dict[str, int] = {}
    anchors = set()
    toks = tokens(path)
    for i, tok in enumerate(toks):
        if tok.type != "heading_open":
            continue
        text = "".join(c.content for c in toks[i + 1].children or () if c.type in ("text", "code_inline"))
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


COMMAND_START = re.compile(r"^([A-Z_]+=\S*\s+)*(pulumi|make|python3?|\.venv/bin/python)\s")


def shell_snippets() -> Iterator[Snippet]:
    for doc in DOCS:
        yield from fences(doc, SHELL_FENCES)
        for span in inline_code(doc):
            if COMMAND_START.match(span.text + " "):
                yield span
    for stack_file in STACK_FILES:
        for n, line in enumerate(stack_file.read_text().splitlines(), 1):
            comment = line.strip()
            if not comment.startswith("#"):
                continue
            comment = comment.lstrip("#").strip()
            where = f"{_rel(stack_file)}:{n}"
            for span in re.findall(r"`([^`]+)`", comment):
                if COMMAND_START.match(span + " "):
                    yield Snippet(where, span)
            if COMMAND_START.match(comment + " "):
                # A command, then its description after a run of spaces.
                yield Snippet(where, re.split(r"\s{2,}", comment)[0])


@dataclass(frozen=True)
class Command:
    where: str
    words: tuple[str, ...]


def parse_shell(snippet: Snippet) -> list[Command]:
    text = _words(snippet.text)
    found: list[Command] = []

    class Visitor(bashlex.ast.nodevisitor):
        def visitcommand(self, node, parts):
            words = tuple(p.word for p in parts if p.kind == "word")
            if words:
                found.append(Command(snippet.where, words))

    for tree in bashlex.parse(text):
        Visitor().visit(tree)
    return found


@functools.lru_cache(maxsize=None)
def documented_commands() -> tuple[Command, ...]:
    commands: list[Command] = []
    for snippet in shell_snippets():
        try:
            commands += parse_shell(snippet)
        except bashlex.errors.ParsingError as err:
            raise AssertionError(f"{snippet.where}: not a shell command bash could parse ({err}): {snippet.text!r}") from None
    return tuple(commands)


def commands_named(*prefix: str) -> list[Command]:
    return [c for c in documented_commands() if c.words[: len(prefix)] == prefix]


# --- the declared config as a schema --------------------------------------------------------------


def _resolve(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a schema allows, with $ref followed and anyOf/oneOf/allOf flattened."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return _resolve(SCHEMA["$defs"][name])
    out = [schema]
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, ()):
            out += _resolve(sub)
    return out


SECURE = SCHEMA["$defs"]["secure"]


def schemas_at(path: list[Any]) -> list[dict[str, Any]]:
    """The schemas of the key at `path` (top-level name, then names and list indexes); [] if undeclared."""
    top = CONFIG_PROPERTIES.get(f"{PROJECT}:{path[0]}")
    if top is None:
        return []
    current = [s for s in _resolve(top) if s != SECURE] or _resolve(top)  # a secret is only {secure: …}
    for segment in path[1:]:
        following: list[dict[str, Any]] = []
        for schema in current:
            if isinstance(segment, int):
                if "items" in schema:
                    following += _resolve(schema["items"])
            elif segment in schema.get("properties", {}):
                following += _resolve(schema["properties"][segment])
            elif isinstance(schema.get("additionalProperties"), dict):
                following += _resolve(schema["additionalProperties"])
        current = [s for s in following if s]
        if not current:
            return []
    return current


PATH_TOKEN = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d*)\]|\["([^"]+)"\]')


def property_path(key: str) -> list[Any]:
    """Pulumi's property path syntax (`a.b[0].c`, `a["x.y"]`); `[]` (any item) is index 0."""
    path: list[Any] = []
    pos = 0
    while pos < len(key):
        match = PATH_TOKEN.match(key, pos)
        if not match or (pos == 0 and key[0] in ".["):
            raise ValueError(f"not a property path: {key!r}")
        name, index, quoted = match.groups()
        path.append(name if name is not None else quoted if quoted is not None else int(index or 0))
        pos = match.end()
    return path


def value_problem(path: list[Any], value: Any) -> Optional[str]:
    schemas = [s for s in schemas_at(path)]
    validator = Draft202012Validator({"$defs": SCHEMA["$defs"], "anyOf": schemas})
    errors = list(validator.iter_errors(value))
    return None if not errors else f"{value!r} is not allowed there ({errors[0].message})"


def pulumi_path_value(text: str) -> Any:
    """What `pulumi config set --path` stores: `true`/`false` as booleans, integers as numbers."""
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


# --- pulumi config set ----------------------------------------------------------------------------

BOOL_FLAGS = {"--path", "--secret", "--plaintext", "--json"}
VALUE_FLAGS = {"--stack", "-s", "--config-file", "--type", "--cwd", "-C"}


def config_set_problems(command: Command) -> list[str]:
    flags: set[str] = set()
    options: dict[str, str] = {}
    positional: list[str] = []
    words = list(command.words[3:])
    while words:
        word = words.pop(0)
        if word in BOOL_FLAGS:
            flags.add(word)
        elif word in VALUE_FLAGS:
            options[word] = words.pop(0) if words else ""
        elif word.split("=", 1)[0] in VALUE_FLAGS:
            options[word.split("=", 1)[0]] = word.split("=", 1)[1]
        elif word.startswith("-") and word != "-":
            return [f"unknown flag {word}"]
        else:
            positional.append(word)
    problems = []
    stack = options.get("--stack", options.get("-s"))
    if stack is not None and not has_placeholder(stack) and stack not in STACKS:
        problems.append(f"--stack {stack}: no Pulumi.{stack}.yaml")
    if not positional:
        return problems  # the command or a flag mentioned in prose, no key given
    key = positional[0]
    namespace, _, name = key.rpartition(":")
    if namespace and namespace != PROJECT:
        return problems  # another provider's key (azure-native:subscriptionId)
    if has_placeholder(name):
        return problems + [f"{key}: name a real key, not a placeholder"]
    nested = "." in name or "[" in name
    if nested and "--path" not in flags:
        problems.append(f"{key} is nested: needs --path (without it Pulumi sets a top-level key named {name!r})")
    if not nested and "--path" in flags:
        problems.append(f"{key} is a top-level key: no --path")
    try:
        path = property_path(name)
    except ValueError as err:
        return problems + [str(err)]
    if not schemas_at(path):
        return problems + [f"{key}: no such key in the declared config (docs/configuration.md)"]
    secret = path[0] in SECRET_KEYS
    if secret and "--secret" not in flags:
        problems.append(f"{key} is declared secret: needs --secret")
    if not secret and "--secret" in flags:
        problems.append(f"{key} is not a secret: no --secret")
    if len(positional) > 1 and not secret and not has_placeholder(positional[1]):
        value = pulumi_path_value(positional[1]) if "--path" in flags else positional[1]
        problem = value_problem(path, value)
        if problem:
            problems.append(f"{key}: {problem}")
    return problems


def test_the_docs_set_config_in_many_places():
    commands = commands_named("pulumi", "config", "set")
    # The readers of the test: these files do hold such commands (a parser that finds none proves nothing).
    files = {c.where.split(":")[0] for c in commands}
    assert {"docs/hybrid.md", "docs/ci.md", "gitops/README.md", "Pulumi.hybrid.yaml"} <= files, files


@pytest.mark.parametrize("command", commands_named("pulumi", "config", "set"), ids=lambda c: c.where)
def test_pulumi_config_set_names_a_declared_key_with_the_right_flags(command):
    assert config_set_problems(command) == [], " ".join(command.words)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("pulumi config set aks-platform:addons.argocd.repoUrl https://github.com/o/r.git", "needs --path"),
        ("pulumi config set --path aks-platform:location westeurope", "no --path"),
        ("pulumi config set --path aks-platform:addons.argocd.repoURL https://x", "no such key"),
        ("pulumi config set aks-platform:kubeconfig < file", "needs --secret"),
        ("pulumi config set --secret --path aks-platform:hybrid.servicePrincipalClientId <id>", "not a secret"),
        ("pulumi config set --path 'aks-platform:cluster.systemPool.count' two", "not allowed"),
        ("pulumi config set --path 'aks-platform:cluster.apiServerAuthorizedIpRanges[0]' x --stack staging", "no Pulumi.staging.yaml"),
        ("pulumi config set --stack <stack> 'aks-platform:<key>' <value>", "placeholder"),
    ],
)
def test_the_config_set_check_catches(text, problem):
    (command,) = parse_shell(Snippet("example", text))
    assert any(problem in p for p in config_set_problems(command)), config_set_problems(command)


def test_a_set_with_path_stores_booleans_and_numbers():
    (command,) = parse_shell(Snippet("example", "pulumi config set --path aks-platform:cluster.localAccounts true"))
    assert config_set_problems(command) == []
    (command,) = parse_shell(Snippet("example", "pulumi config set --path aks-platform:cluster.systemPool.zones[0] 1"))
    assert config_set_problems(command) == []


# --- keys and YAML examples -----------------------------------------------------------------------

KEY_REFERENCE = re.compile(
    rf"^(?P<prefix>{PROJECT}:)?(?P<path>[a-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*|\[\d*\])*)(?::\s+(?P<value>.+))?$"
)


def _comment_words(stack_file: Path) -> Iterator[Snippet]:
    for n, line in enumerate(stack_file.read_text().splitlines(), 1):
        if line.strip().startswith("#"):
            for word in re.findall(r"(?<![\w/.-])[A-Za-z][\w:.\[\]-]*[\w\]](?![\w/])", line):
                yield Snippet(f"{_rel(stack_file)}:{n}", word)


def key_references() -> Iterator[tuple[Snippet, list[Any], Optional[str]]]:
    """Inline code naming a config key (`aks-platform:<path>`, or a nested path under a top-level
    key), and such paths in the stack files' comments."""
    spans = [span for doc in DOCS for span in inline_code(doc)] + [w for f in STACK_FILES for w in _comment_words(f)]
    for span in spans:
        match = KEY_REFERENCE.match(span.text.strip())
        if not match:
            continue
        path = property_path(match["path"])
        if match["prefix"] or (path[0] in TOP_LEVEL and len(path) > 1):
            yield span, path, match["value"]


def test_key_references_are_found():
    found = {".".join(map(str, path)) for _, path, _ in key_references()}
    assert {"addons.argocd.repoUrl", "cluster.apiServerAuthorizedIpRanges", "hybrid.oidcIssuerUrl"} <= found
    assert any(span.where.startswith("Pulumi.hybrid.yaml") for span, _, _ in key_references())


@pytest.mark.parametrize("ref", list(key_references()), ids=lambda r: f"{r[0].where}:{r[0].text}")
def test_every_key_the_docs_name_is_declared(ref):
    span, path, value = ref
    assert schemas_at(path), f"{span.where}: `{span.text}` names no declared key (docs/configuration.md lists them)"
    if value is not None:
        problem = value_problem(path, yaml.safe_load(value))
        assert problem is None, f"{span.where}: `{span.text}`: {problem}"


def yaml_config_examples() -> Iterator[tuple[Snippet, dict[str, Any]]]:
    for doc in DOCS:
        for block in fences(doc, {"yaml", "yml"}):
            # A `<placeholder>` stands for a value to fill in: a plain word keeps the example's shape.
            data = yaml.safe_load(PLACEHOLDER.sub(lambda m: re.sub(r"[^a-z0-9]", "", (m.group(1) or "").lower()) or "x", block.text))
            if not isinstance(data, dict):
                continue
            if "config" in data:
                yield block, data
            elif any(str(k).startswith(f"{PROJECT}:") for k in data):
                yield block, {"config": data}


def test_yaml_config_examples_validate_against_the_declared_config():
    validator = Draft202012Validator(SCHEMA)
    examples = list(yaml_config_examples())
    assert examples, "the README's first deployment shows the stack file's keys to edit"
    for block, doc in examples:
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == [], block.where


def test_a_misspelled_key_in_an_example_fails():
    validator = Draft202012Validator(SCHEMA)
    assert list(validator.iter_errors({"config": {f"{PROJECT}:addons": {"argocd": {"repoURL": "https://x"}}}}))


# --- make ----------------------------------------------------------------------------------------


def make_invocation(command: Command) -> tuple[list[str], dict[str, str]]:
    targets, variables = [], {}
    for word in command.words[1:]:
        if "=" in word and not word.startswith("-"):
            name, _, value = word.partition("=")
            variables[name] = value
        elif not word.startswith("-"):
            targets.append(word)
    return targets, variables


def dry_run(targets: list[str], variables: dict[str, str]) -> subprocess.CompletedProcess:
    concrete = {k: ("dev" if has_placeholder(v) else v) for k, v in variables.items()}
    return _dry_run(tuple(targets), tuple(sorted(concrete.items())))


@functools.lru_cache(maxsize=None)
def _dry_run(targets: tuple[str, ...], variables: tuple[tuple[str, str], ...]) -> subprocess.CompletedProcess:
    """`make -n`: make itself reads the Makefile and prints the recipes without running them."""
    return subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), *targets, *(f"{k}={v}" for k, v in variables),
         "PY=python", "PYTHON=python"],
        capture_output=True, text=True, timeout=30,
    )


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


@needs_make
@pytest.mark.parametrize("command", commands_named("make"), ids=lambda c: f"{c.where}:{' '.join(c.words)}")
def test_every_make_command_exists(command):
    targets, variables = make_invocation(command)
    if not targets:
        pytest.skip("`make` named in prose, not a command")
    stack = variables.get("STACK")
    if stack is not None and not has_placeholder(stack):
        assert stack in STACKS, f"{command.where}: STACK={stack}: no Pulumi.{stack}.yaml"
    proc = dry_run(targets, variables)
    assert proc.returncode == 0, f"{command.where}: {' '.join(command.words)}: {proc.stderr.strip()}"


@needs_make
def test_a_missing_make_target_fails():
    assert dry_run(["deploy"], {"STACK": "dev"}).returncode != 0


# --- links ---------------------------------------------------------------------------------------


def relative_links() -> Iterator[tuple[Path, Snippet]]:
    for doc in DOCS:
        for link in links(doc):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", link.text):
                yield doc, link


@pytest.mark.parametrize("link", list(relative_links()), ids=lambda d: f"{d[1].where}:{d[1].text}")
def test_every_relative_link_resolves(link):
    doc, snippet = link
    target, _, anchor = snippet.text.partition("#")
    path = (doc.parent / target).resolve() if target else doc
    assert path.exists(), f"{snippet.where}: {snippet.text}: no such file"
    assert path.is_relative_to(ROOT), f"{snippet.where}: {snippet.text}: outside the repository"
    if anchor:
        assert path.suffix == ".md", f"{snippet.where}: {snippet.text}: an anchor into a file that is not Markdown"
        assert anchor in github_anchors(path), f"{snippet.where}: #{anchor}: no such heading in {_rel(path)}"


REPO_PATH = re.compile(r"^(components|stacks|offline|policy|scripts|tests|docs|gitops|app|\.github|\.ci)/[\w./-]*[\w/]$")


def file_references() -> Iterator[tuple[Path, Snippet]]:
    """Inline code naming a file or folder of the repository (`components/cluster.py`)."""
    for doc in DOCS:
        for span in inline_code(doc):
            if REPO_PATH.match(span.text):
                yield doc, span


@pytest.mark.parametrize("ref", list(file_references()), ids=lambda d: f"{d[1].where}:{d[1].text}")
def test_every_file_the_docs_name_exists(ref):
    doc, span = ref
    # From the repository root, or (gitops/README.md, app/README.md) from the document's folder;
    # or a path the docs tell you to create that Git ignores (`app/.venv`): never in a clone.
    exists = (ROOT / span.text).exists() or (doc.parent / span.text).exists()
    generated = any(
        subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0 for path in (span.text, span.text + "/")
    )
    assert exists or generated, f"{span.where}: `{span.text}`: no such file"


def test_anchors_follow_github():
    anchors = github_anchors(ROOT / "docs" / "configuration.md")
    assert {"aks-platformtenants", "aks-platformhybrid", "aks-platformclustersystempool"} <= anchors


# --- the offline commands, run -------------------------------------------------------------------

OFFLINE_MODULES = ("offline.plan", "offline.policy_check", "stacks.reference")


def offline_invocations() -> dict[tuple[str, ...], str]:
    """Each documented offline command as (module, args...) -> where, `make` resolved by make itself."""
    found: dict[tuple[str, ...], str] = {}
    for command in documented_commands():
        words = list(command.words)
        if words[0] == "make" and shutil.which("make"):
            targets, variables = make_invocation(command)
            if not set(targets) & {"plan", "policy", "docs"}:
                continue
            recipe = dry_run(targets, variables).stdout
            lines = [line.split() for line in recipe.splitlines() if re.search(r"-m (offline\.plan|offline\.policy_check|stacks\.reference)\b", line)]
        elif re.fullmatch(r"(.*/)?python3?", words[0]) and len(words) > 2 and words[1] == "-m":
            lines = [words]
        else:
            continue
        for line in lines:
            module = line[line.index("-m") + 1]
            if module in OFFLINE_MODULES:
                found.setdefault((module, *line[line.index("-m") + 2 :]), command.where)
    return found


def test_the_docs_document_the_offline_commands():
    modules = {key[0] for key in offline_invocations()}
    assert modules == set(OFFLINE_MODULES)


@pytest.fixture
def shipped_evaluations(monkeypatch, shipped):
    """offline.plan / offline.policy_check evaluate through the session's shared evaluations of the shipped stacks."""
    real = offline_plan.evaluate_stack

    def evaluate_stack(stack, mode="preview", root=offline_plan.REPO_ROOT):
        if root != offline_plan.REPO_ROOT:
            return real(stack, mode, root)
        offline_plan.load_stack(stack, root)
        return shipped(stack, preview=mode == "preview")

    monkeypatch.setattr(offline_plan, "evaluate_stack", evaluate_stack)
    # offline.policy_check imported its own name for it: without this, `make policy` evaluated every stack afresh.
    monkeypatch.setattr(policy_check, "evaluate_stack", evaluate_stack)


@pytest.mark.parametrize("invocation", sorted(offline_invocations()), ids=" ".join)
def test_documented_offline_commands_run(invocation, shipped_evaluations, tmp_path, capsys):
    module, *args = invocation
    args = ["dev" if has_placeholder(a) else a for a in args]
    if module == "offline.plan":
        rc = offline_plan.main([*args, "--out", str(tmp_path)])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"plan-{args[0]}.{ext}" for ext in ("json", "md"))
    elif module == "offline.policy_check":
        rc = policy_check.main(args)
        assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")] == (
            [a for a in args if not a.startswith("-")] or STACKS
        )
    else:
        # Regenerating would write the files: --check runs the same generation and compares.
        rc = reference.main([*(a for a in args if a != "--check"), "--check"])
    assert rc == 0, f"{module} {' '.join(args)} (documented at {offline_invocations()[invocation]}) failed"


# --- figures -------------------------------------------------------------------------------------

FIGURES_DOC = ROOT / "docs" / "testing.md"


def quoted_figures() -> dict[str, tuple[int, float, Optional[float]]]:
    """The per-stack table of docs/testing.md: stack -> (resources, modelled minutes, ideal minutes)."""
    rows: dict[str, tuple[int, float, Optional[float]]] = {}
    toks = tokens(FIGURES_DOC)
    for i, tok in enumerate(toks):
        if tok.type == "tr_open" and toks[i + 1].type == "td_open":
            cells = []
            j = i
            while toks[j].type != "tr_close":
                if toks[j].type == "inline":
                    cells.append(toks[j].content.strip("` "))
                j += 1
            if cells and cells[0] in STACKS:
                rows[cells[0]] = (int(cells[1]), float(cells[2]), None if cells[3] in ("", "–", "-") else float(cells[3]))
    return rows


def test_the_figures_cover_every_shipped_stack():
    assert sorted(quoted_figures()) == STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_quoted_figures_are_what_the_model_computes(stack, shipped):
    model = deployment_model(shipped(stack))
    computed = (model["resources"], model["criticalPathMinutes"], model["ideal"] and model["ideal"]["minutes"])
    assert quoted_figures()[stack] == computed, (
        f"docs/testing.md's row for {stack} is stale: | {stack} | {computed[0]} | {computed[1]} | {computed[2] or '–'} |"
    )


# --- the README's lists of stacks and outputs -----------------------------------------------------


def readme_paragraph_code(start: str) -> list[str]:
    for tok in tokens(ROOT / "README.md"):
        if tok.type == "inline" and tok.content.startswith(start):
            return [c.content for c in tok.children or () if c.type == "code_inline"]
    raise AssertionError(f"README.md has no paragraph starting {start!r}")


def test_the_readme_lists_every_shipped_stack():
    toks = tokens(ROOT / "README.md")
    heading = next(i for i, t in enumerate(toks) if t.type == "inline" and t.content == "Stacks")
    first_cells = []
    for i in range(heading, len(toks)):
        if toks[i].type == "table_close":
            break
        if toks[i].type == "td_open" and toks[i - 1].type == "tr_open":
            first_cells.append(toks[i + 1].content.strip("`"))
    assert sorted(first_cells) == [p.name for p in STACK_FILES]


def test_the_readme_lists_every_stack_output(shipped):
    documented = {name for name in readme_paragraph_code("Outputs:") if re.fullmatch(r"[a-z][A-Za-z]+", name)}
    produced = {name for stack in STACKS for name in shipped(stack).outputs}
    assert documented == produced
