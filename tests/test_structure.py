"""The shape of the package: no import cycles, every module importable, a light CLI, small files."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("guided", "pipelines")
MAX_LINES = 500  # a file a reader takes in at once; the pipeline files (diffusers' one-file style) excepted


def _modules() -> dict[str, Path]:
    """Module name -> file, for every module of `guided` and `pipelines`."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `name` imports when it is imported (module level, not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from a import b` imports a.b when b is a module, else the name b of module a.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_modules():
    modules = _modules()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        # A submodule's import of its own parent package is how Python imports packages, not a cycle.
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = _top_level_imports(name, path, known) - parents
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


#: The layers, top first: a module may import only from layers below its own, and within its own
#: subpackage. Groups on one line are independent of each other (neither imports the other); the last
#: line is the core, whose modules may import one another. Checked over every import, the ones inside
#: functions included, as import-linter's `layers` contract does.
LAYERS = [
    ("guided.__main__",),
    ("guided.cli", "guided.demo"),
    ("guided.serve",),
    ("guided.video",),
    ("guided.compare", "guided.batch"),
    ("guided.stylize",),
    ("pipelines",),
    ("guided.fast", "guided.gatys"),
    ("guided.guidance", "guided.testing"),
    ("guided.models",),
    ("guided.io",),
    ("guided.accel", "guided.color", "guided.config", "guided.constants", "guided.errors", "guided.interrupts",
     "guided.losses", "guided.validate"),
]
CORE = len(LAYERS) - 1
#: The package itself (`guided/__init__`) is the lazy public face: it may name anything; importing it
#: from inside the package is allowed for its version string only.
FACADE, FACADE_NAMES = "guided", {"__version__"}


def _all_imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int, set[str]]]:
    """(target module, line, names) for every import of our modules in `name`, in functions too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, set()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            pairs = [(f"{base}.{a.name}", set()) if f"{base}.{a.name}" in known else (base, {a.name})
                     for a in node.names]
        else:
            continue
        for target, names in pairs:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno, names))
    return found


def _layer_of(name: str) -> tuple[int, str]:
    """(layer index, group) of module `name`."""
    for index, groups in enumerate(LAYERS):
        for group in groups:
            if name == group or name.startswith(group + "."):
                return index, group
    raise AssertionError(f"module {name} is in no layer of tests/test_structure.py LAYERS")


def layer_violations(modules: dict[str, Path]) -> list[str]:
    """Every import that runs up the layers or across independent groups, as 'a:line -> b'."""
    known = set(modules)
    bad = []
    for name, path in modules.items():
        if name == FACADE:
            continue
        mine, group = _layer_of(name)
        for target, line, names in _all_imports(name, path, known):
            if target == FACADE:
                if not names <= FACADE_NAMES:
                    bad.append(f"{name}:{line} -> {target} ({', '.join(sorted(names - FACADE_NAMES))})")
                continue
            theirs, other = _layer_of(target)
            if theirs > mine or other == group or (theirs == mine == CORE):
                continue
            bad.append(f"{name}:{line} -> {target}")
    return bad


def test_every_import_runs_down_the_layers():
    bad = layer_violations(_modules())
    assert not bad, "imports that run up the layers (or across independent groups):\n" + "\n".join(bad)


def _module_file(root: Path, name: str, text: str) -> Path:
    path = root.joinpath(*name.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_layer_check_sees_an_upward_import_inside_a_function(tmp_path):
    upward = "import os\n\ndef f():\n    from guided.serve.app import create_app\n    return create_app\n"
    modules = {"guided": _module_file(tmp_path, "guided.__init__", ""),
               "guided.io.low": _module_file(tmp_path, "guided.io.low", upward),
               "guided.serve.app": _module_file(tmp_path, "guided.serve.app", "from guided.io.low import f\n")}
    assert layer_violations(modules) == ["guided.io.low:4 -> guided.serve.app"]
    modules["guided.io.low"].write_text("from guided import Stylizer\n")  # a facade name other than the version
    assert layer_violations(modules) == ["guided.io.low:1 -> guided (Stylizer)"]
    siblings = {"guided.gatys.x": _module_file(tmp_path, "guided.gatys.x", "from guided.fast import y\n"),
                "guided.fast.y": _module_file(tmp_path, "guided.fast.y", "")}
    assert layer_violations(siblings) == ["guided.gatys.x:1 -> guided.fast.y"]


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(n for n in _modules() if not n.endswith("__main__"))  # those run a command
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\nprint('ok')"
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_cli_help_and_package_import_load_no_torch():
    code = ("import sys, contextlib, io\n"
            "import guided\n"
            "from guided.cli import build_parser\n"
            "parser = build_parser()\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    parser.format_help()\n"
            "    for name, sub in parser._subparsers._group_actions[0].choices.items(): sub.format_help()\n"
            "heavy = ('torch', 'diffusers', 'open_clip', 'transformers', 'av', 'cv2', 'fastapi', 'gradio', 'uvicorn')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", f"`guided --help` imported {proc.stdout.strip()}"


def test_the_public_api_is_reachable_lazily():
    import guided

    assert {"GuidanceConfig", "Stylizer", "gatys_stylize"} <= set(guided.__all__)
    for name in guided.__all__:
        assert getattr(guided, name) is not None
    import importlib.util

    for package in ("guided.video", "guided.fast", "guided.serve"):  # their lazy maps name real modules
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            if package != "guided.video" or importlib.util.find_spec("av"):
                assert getattr(module, name) is not None, f"{package}.{name}"


def test_files_stay_small():
    too_long = {str(p.relative_to(ROOT)): n for p in _modules().values()
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
                and not p.name.startswith("pipeline_")}
    assert not too_long, f"files over {MAX_LINES} lines: {too_long}"


def test_the_old_spellings_are_gone(capsys):
    """Nothing was released, so renamed options were removed rather than kept as aliases (CHANGELOG.md)."""
    import pytest

    from guided.cli import build_parser

    for argv in (["stylize", "photo.png", "--prompt", "x", "--models", "tiny", "-o", "o.png"],
                 ["gatys", "c.png", "s.png", "--original-colors", "-o", "o.png"],
                 ["fast", "net.safetensors", "p.png", "--original-colors", "-o", "o.png"],
                 ["serve", "--models", "tiny"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        assert "unrecognized arguments" in capsys.readouterr().err
    args = build_parser().parse_args(["stylize", "photo.png", "--prompt", "x", "--tiny", "-o", "o.png"])
    assert args.tiny is True
