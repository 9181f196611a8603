"""`webapp/` is only what runs in production: it never imports the emulators (`sandbox/`) or the
development tooling (`devserver/`), which import it, not the other way round (README, Layout)."""
import ast
from pathlib import Path

WEBAPP = Path(__file__).resolve().parent.parent / "webapp"
OUTSIDE = ("sandbox", "devserver")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file of webapp/ (relative ones resolved)."""
    package = ".".join(path.relative_to(WEBAPP.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def violations() -> list[str]:
    bad = []
    for path in sorted(WEBAPP.rglob("*.py")):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if top in OUTSIDE or module.startswith(tuple(f"webapp.{name}" for name in OUTSIDE)):
                bad.append(f"{path.relative_to(WEBAPP.parent)}:{line} imports {module}")
    return bad


def test_webapp_imports_no_emulator_or_dev_tooling():
    assert violations() == []


def test_a_planted_import_is_caught(tmp_path, monkeypatch):
    """The check can fail: a module importing sandbox (absolute, or relative from a subpackage) is named."""
    fake = tmp_path / "webapp"
    (fake / "deposits").mkdir(parents=True)
    (fake / "__init__.py").write_text("from . import db\n")
    (fake / "deposits" / "__init__.py").write_text("")
    (fake / "deposits" / "tasks.py").write_text("import json\nfrom sandbox.mercadopago import start_in_thread\n")
    (fake / "run.py").write_text("from devserver import cluster\n")
    monkeypatch.setitem(globals(), "WEBAPP", fake)
    assert violations() == ["webapp/deposits/tasks.py:2 imports sandbox.mercadopago",
                            "webapp/deposits/tasks.py:2 imports sandbox.mercadopago.start_in_thread",
                            "webapp/run.py:1 imports devserver", "webapp/run.py:1 imports devserver.cluster"]
