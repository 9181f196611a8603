"""`webapp/` is only what runs in production: it never imports the emulators (`sandbox/`) or the
development tooling (`devserver/`), which import it, not the other way round (README, Layout)."""
import ast
import importlib
import re
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


# Issue 16: every domain is always there, so nothing asks whether another one is installed.
ROOT = WEBAPP.parent
PROBE_NAMES = {"importlib", "import_module", "find_spec", "__import__", "UndefinedFunction", "ModuleNotFoundError",
               "ImportError"}
SQL_PROBES = re.compile(r"\b(to_regprocedure|to_regproc|undefined_function|undefined_table|undefined_object)\b", re.I)
# Dynamic SQL that is not a probe: the name of what it builds or reads is data.
DYNAMIC_SQL = {
    "core.create_ledger_partition",   # DDL of next month's partition, named after the month
    "core.enforce_daily_limit",       # reads the core.kyc_limits column named by the limit
}
FUNCTION = re.compile(r"create\s+(?:or\s+replace\s+)?function\s+([\w.]+)\s*\(.*?\$(\w*)\$(.*?)\$\2\$", re.I | re.S)
EXECUTE = re.compile(r"\bexecute\b(?!\s+(function|procedure)\b)", re.I)


def python_probes(folders=("webapp", "devserver")) -> list[str]:
    """Imports of importlib, dynamic imports, and catching a missing module or SQL function."""
    bad = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found = []
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name.split(".")[0] for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [(node.module or "").split(".")[0]] + [alias.name for alias in node.names]
                elif isinstance(node, ast.Name):
                    names = [node.id]
                elif isinstance(node, ast.Attribute):
                    names = [node.attr]
                found += [(node.lineno, name) for name in names if name in PROBE_NAMES]
            bad += [f"{path.relative_to(ROOT)}:{line} {name}" for line, name in sorted(found)]
    return bad


def sql_probes(folder: Path) -> list[str]:
    bad = []
    for path in sorted(folder.rglob("*.sql")):
        text = path.read_text()
        bad += [f"{path.relative_to(folder.parent)}: {m.group(1)}" for m in SQL_PROBES.finditer(text)]
        for name, _, body in FUNCTION.findall(text):
            if EXECUTE.search(body) and name not in DYNAMIC_SQL:
                bad.append(f"{path.relative_to(folder.parent)}: dynamic SQL in {name}")
    return bad


def test_no_code_asks_whether_a_domain_is_installed():
    assert python_probes() == []
    assert sql_probes(ROOT / "sql") == []


def test_a_planted_probe_is_caught(tmp_path, monkeypatch):
    (tmp_path / "webapp").mkdir()
    (tmp_path / "webapp" / "jobs.py").write_text(
        "import importlib\ntry:\n    m = importlib.import_module('webapp.kyc.tasks')\n"
        "except ModuleNotFoundError:\n    m = None\n")
    (tmp_path / "webapp" / "tasks.py").write_text(
        "import psycopg\ntry:\n    pass\nexcept psycopg.errors.UndefinedFunction:\n    pass\n")
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "p2p.sql").write_text(
        "create function api.x() returns void language plpgsql as $$\nbegin\n"
        "  if to_regprocedure('api.y()') is not null then execute 'select api.y()'; end if;\nend\n$$;\n"
        "create function core.create_ledger_partition(month date) returns boolean language plpgsql as $f$\n"
        "begin execute format('create table core.%I ()', 'x'); return true; end\n$f$;\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert python_probes(("webapp",)) == ["webapp/jobs.py:1 importlib", "webapp/jobs.py:3 import_module",
                                          "webapp/jobs.py:3 importlib", "webapp/jobs.py:4 ModuleNotFoundError",
                                          "webapp/tasks.py:4 UndefinedFunction"]
    assert sql_probes(tmp_path / "sql") == ["sql/p2p.sql: to_regprocedure", "sql/p2p.sql: dynamic SQL in api.x"]


def test_every_domain_is_registered_and_its_jobs_scheduled():
    """Each webapp/<domain> blueprint is registered by create_app, each tasks.py's JOBS run by the worker
    (creating the app connects to nothing, so no database is needed here)."""
    from webapp import create_app, jobs
    unreachable = "postgresql://nobody@127.0.0.1:1/none"
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "APP_DATABASE_URL": unreachable,
                      "AUDIT_DATABASE_URL": unreachable, "WORKER_DATABASE_URL": unreachable})
    blueprints = [path.parent.name for path in WEBAPP.glob("*/__init__.py") if "Blueprint(" in path.read_text()]
    assert len(blueprints) >= 15 and set(blueprints) <= set(app.blueprints)
    scheduled = jobs.collect_jobs()
    for path in sorted(WEBAPP.glob("*/tasks.py")):
        module = importlib.import_module(f"webapp.{path.parent.name}.tasks")
        assert module.JOBS and all(job in scheduled for job in module.JOBS), path
