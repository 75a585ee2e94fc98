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


def test_files_stay_small():
    too_long = {str(p.relative_to(ROOT)): n for p in _modules().values()
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
                and not p.name.startswith("pipeline_")}
    assert not too_long, f"files over {MAX_LINES} lines: {too_long}"


def test_deprecated_spellings_still_work_and_say_so(capsys):
    from guided.cli import build_parser, configure_logging

    configure_logging()
    args = build_parser().parse_args(["stylize", "photo.png", "--prompt", "x", "--models", "tiny", "-o", "o.png"])
    assert args.models == "tiny"
    args = build_parser().parse_args(["gatys", "c.png", "s.png", "--original-colors", "-o", "o.png"])
    assert args.preserve_color is True
    err = capsys.readouterr().err
    assert "--models is deprecated" in err and "use --tiny" in err
    assert "--original-colors is deprecated" in err and "use --preserve-color" in err
    args = build_parser().parse_args(["stylize", "photo.png", "--prompt", "x", "--tiny", "-o", "o.png"])
    assert args.models == "tiny"
    assert "deprecated" not in capsys.readouterr().err
