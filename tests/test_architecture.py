"""The layout's rules, checked by reading every module of course/ and worker/ with `ast` (nothing is
imported or run):

1. content/ knows nothing of sending: it imports nothing of audience, campaigns, delivery, web, cli,
   worker or devtools.
2. Frameworks stay at the edges: FastAPI/Starlette only under course/web/, Typer only under
   course/cli/ and course/devtools/, Celery only under worker/ and course/devtools/.
3. course/ledger.py is the only module that writes `deliveries` (INSERT, UPDATE or DELETE through
   SQLAlchemy, a `Delivery(...)` object, an ORM assignment to a ledger-only column, or raw SQL).
4. No module imports one above it in the layer order (LAYERS below), so data flows one way.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("course", "worker")

# Lowest first. A module may import modules of its own layer or of lower ones, never higher ones.
# Prefixes are matched longest first; "course" alone is the package's __init__.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("course", "course.settings", "course.clock", "course.db", "course.models", "course.schema", "course.migrations")),
    ("ledger", ("course.ledger", "course.ratelimit", "course.counters")),
    # Watching the ledger (read-only): the audit, heartbeats and metrics, used by delivery, web and cli.
    ("ops", ("course.ops",)),
    ("accounts", ("course.accounts",)),  # admin accounts: models, ratelimit and settings only
    ("content", ("course.content",)),
    ("audience", ("course.audience",)),
    ("campaigns", ("course.campaigns",)),
    ("delivery", ("course.delivery",)),
    # Reports that come back after sending: they read the ledger, suppress and unsubscribe.
    ("bounces", ("course.bounces",)),
    ("web, worker", ("course.web", "worker")),
    ("devtools", ("course.devtools",)),
    ("cli", ("course.cli",)),
]

# Third-party packages and the only places that may import them.
FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "fastapi": ("course.web",),
    "starlette": ("course.web",),
    "typer": ("course.cli", "course.devtools"),
    "celery": ("worker", "course.devtools"),
}

# What content/ must not import: anything about subscribers or sending.
CONTENT_FORBIDDEN = (
    "course.audience",
    "course.campaigns",
    "course.delivery",
    "course.web",
    "course.cli",
    "course.devtools",
    "worker",
)

LEDGER_MODULE = "course.ledger"
# Migrations change the schema, not the rows the product sends: they are not ledger writes.
LEDGER_WRITE_EXEMPT = ("course.migrations",)
# Columns only a delivery row has: assigning one (`row.lease_token = None`) is an ORM UPDATE.
DELIVERY_ONLY_COLUMNS = {"lease_token", "lease_expires_at", "message_id", "last_error"}
RAW_LEDGER_WRITE = re.compile(r"\b(insert\s+into|update|delete\s+from)\s+\"?deliveries\b", re.IGNORECASE)


@dataclass(frozen=True)
class Violation:
    module: str
    rule: str
    what: str
    line: int
    message: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.module, self.rule, self.what)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if ".venv" not in path.parts
    }


MODULES = project_modules()


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the longest prefix that contains `module` (None: not ours)."""
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def imports_of(module: str, tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Every module named by an import statement anywhere in the file (also inside functions),
    with `from package import module` resolved to the submodule when it is one of ours."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in MODULES else base), node.lineno


def import_violations(module: str, tree: ast.Module) -> Iterator[Violation]:
    own_layer = layer_of(module)
    for imported, line in imports_of(module, tree):
        top = imported.split(".")[0]
        if top in FRAMEWORKS and not within(module, FRAMEWORKS[top]):
            yield Violation(
                module, "frameworks", top, line,
                f"{module} (line {line}) imports {imported}: {top} may only be imported under "
                f"{', '.join(FRAMEWORKS[top])}",
            )
        if within(module, ("course.content",)) and within(imported, CONTENT_FORBIDDEN):
            yield Violation(
                module, "content-knows-nothing-of-sending", imported, line,
                f"{module} (line {line}) imports {imported}: content/ must know nothing of subscribers "
                "or sending (it may use course.models and course.ledger)",
            )
        imported_layer = layer_of(imported)
        if own_layer is not None and imported_layer is not None and imported_layer > own_layer:
            yield Violation(
                module, "layers", imported, line,
                f"{module} (line {line}) imports {imported}: layer '{LAYERS[own_layer][0]}' must not import "
                f"the higher layer '{LAYERS[imported_layer][0]}' (order: {' < '.join(name for name, _ in LAYERS)})",
            )


def _is_delivery(node: ast.expr) -> bool:
    """`Delivery`, `models.Delivery`, `Delivery.__table__`."""
    if isinstance(node, ast.Name):
        return node.id == "Delivery"
    if isinstance(node, ast.Attribute):
        return node.attr == "Delivery" or (node.attr == "__table__" and _is_delivery(node.value))
    return False


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _strings(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """String constants, with an f-string's literal parts joined."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value, node.lineno
        elif isinstance(node, ast.JoinedStr):
            yield "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)), node.lineno


def ledger_write_violations(module: str, tree: ast.Module) -> Iterator[Violation]:
    if module == LEDGER_MODULE or within(module, LEDGER_WRITE_EXEMPT):
        return

    def found(what: str, line: int) -> Violation:
        return Violation(
            module, "ledger-writer", what, line,
            f"{module} (line {line}): {what}: only {LEDGER_MODULE} may INSERT, UPDATE or DELETE deliveries "
            "(call one of its functions)",
        )

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _called_name(node.func)
            # insert(Delivery), update(Delivery), delete(Delivery), postgresql.insert(Delivery), ...
            if node.args and _is_delivery(node.args[0]) and re.search(r"(insert|update|delete)$", name, re.IGNORECASE):
                yield found(f"{name}(Delivery)", node.lineno)
            # Delivery.__table__.insert() / .update() / .delete()
            if isinstance(node.func, ast.Attribute) and name in {"insert", "update", "delete"} and _is_delivery(node.func.value):
                yield found(f"Delivery.__table__.{name}()", node.lineno)
            # Delivery(...): a new row, for session.add / add_all
            if name == "Delivery":
                yield found("Delivery(...) construction", node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr in DELIVERY_ONLY_COLUMNS:
                    yield found(f"assignment to .{target.attr}", node.lineno)
    for value, line in _strings(tree):
        for match in RAW_LEDGER_WRITE.finditer(value):
            verb = " ".join(match.group(1).upper().split())
            yield found(f"raw SQL {verb} deliveries", line)


def private_definitions() -> dict[str, set[str]]:
    """Private function and method names (one leading underscore) -> the modules defining them."""
    defined: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and re.match(r"_[^_]", node.name):
                defined.setdefault(node.name, set()).add(module)
    return defined


PRIVATE_DEFINITIONS = private_definitions()


def private_call_violations(module: str, tree: ast.Module) -> Iterator[Violation]:
    """`from course.x import _name`, and calls of a private method that another project module
    defines on an object other than self/cls (a third-party library's privates are its business)."""
    own = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                if re.match(r"_[^_]", alias.name):
                    yield Violation(
                        module, "private-call", f"{node.module}.{alias.name}", node.lineno,
                        f"{module} (line {node.lineno}) imports the private {node.module}.{alias.name}: "
                        "make it public or add a public function for what the caller needs",
                    )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr, owner = node.func.attr, node.func.value
            if not re.match(r"_[^_]", attr) or attr in own or attr not in PRIVATE_DEFINITIONS:
                continue
            if isinstance(owner, ast.Name) and owner.id in {"self", "cls"}:
                continue
            for defining in sorted(PRIVATE_DEFINITIONS[attr]):
                yield Violation(
                    module, "private-call", f"{defining}.{attr}", node.lineno,
                    f"{module} (line {node.lineno}) calls {ast.unparse(owner)}.{attr}, private to {defining}: "
                    "use a public seam",
                )


def all_violations() -> list[Violation]:
    violations: list[Violation] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        violations += import_violations(module, tree)
        violations += ledger_write_violations(module, tree)
        violations += private_call_violations(module, tree)
    return violations


VIOLATIONS = all_violations()


@pytest.mark.parametrize("rule", ["frameworks", "content-knows-nothing-of-sending", "ledger-writer", "layers", "private-call"])
def test_the_layout_rules_hold(rule: str) -> None:
    broken = [v for v in VIOLATIONS if v.rule == rule]
    assert not broken, "\n".join(v.message for v in broken)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in the file, also inside functions)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = {imported for imported, _ in imports_of(module, tree) if imported in MODULES and imported != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative):
    each is a set of modules that import each other, directly or round a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


# worker.app names its task modules so Celery registers them, and they import the app: Celery's
# own pattern, outside course/.
CYCLE_CHECKED = ("course",)


def test_no_import_cycle_among_course_modules() -> None:
    """A cycle hides which module is the lower one; a function-level import does not break it."""
    cycles = [cycle for cycle in import_cycles(import_graph()) if all(within(m, CYCLE_CHECKED) for m in cycle)]
    assert not cycles, "modules that import each other: " + "; ".join(" <-> ".join(cycle) for cycle in cycles)


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_one_campaign_service() -> None:
    """The web, the API, the CLI and the workers change campaigns through course.campaigns.service
    alone: no second module of course/campaigns writes a campaign's status."""
    writers = []
    for module, path in MODULES.items():
        if not within(module, ("course.campaigns",)) or module == "course.campaigns.service":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            assigns_status = isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
                isinstance(target, ast.Attribute) and target.attr == "status"
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
            updates_campaign = isinstance(node, ast.Call) and _called_name(node.func) == "update" and any(
                isinstance(arg, ast.Name) and arg.id == "Campaign" for arg in node.args
            )
            if assigns_status or updates_campaign:
                writers.append(f"{module} (line {node.lineno})")
    assert not writers, f"only course.campaigns.service changes a campaign's state: {writers}"
    assert "course.campaigns.editor" not in MODULES


def test_every_module_is_in_a_layer() -> None:
    """A new top-level module must be placed in LAYERS, or the layer rule cannot see it."""
    unplaced = sorted(module for module in MODULES if layer_of(module) is None)
    assert not unplaced, f"add these modules to LAYERS in {Path(__file__).name}: {unplaced}"


# --- the checker itself, on small sources: each rule catches what it should ----------------------


def check_source(module: str, source: str) -> set[tuple[str, str]]:
    tree = ast.parse(source)
    MODULES.setdefault(module, ROOT / (module.replace(".", "/") + ".py"))
    try:
        found = [*import_violations(module, tree), *ledger_write_violations(module, tree), *private_call_violations(module, tree)]
    finally:
        if not (ROOT / (module.replace(".", "/") + ".py")).exists():
            del MODULES[module]
    return {(v.rule, v.what) for v in found}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from sqlalchemy import update\nupdate(Delivery).values(state='x')", ("ledger-writer", "update(Delivery)")),
        ("from sqlalchemy import insert\ninsert(Delivery)", ("ledger-writer", "insert(Delivery)")),
        ("delete(models.Delivery)", ("ledger-writer", "delete(Delivery)")),
        ("postgresql.insert(Delivery).on_conflict_do_nothing()", ("ledger-writer", "insert(Delivery)")),
        ("dialect_insert(Delivery).from_select([], q)", ("ledger-writer", "dialect_insert(Delivery)")),
        ("Delivery.__table__.update()", ("ledger-writer", "Delivery.__table__.update()")),
        ("session.add(Delivery(subscriber_id=1))", ("ledger-writer", "Delivery(...) construction")),
        ("row.lease_token = None", ("ledger-writer", "assignment to .lease_token")),
        ("text('UPDATE deliveries SET state = :s')", ("ledger-writer", "raw SQL UPDATE deliveries")),
        ("text(f'''insert into deliveries (id) values ({n})''')", ("ledger-writer", "raw SQL INSERT INTO deliveries")),
        ("text('DELETE FROM \"deliveries\"')", ("ledger-writer", "raw SQL DELETE FROM deliveries")),
        ("import typer", ("frameworks", "typer")),
        ("from fastapi import FastAPI", ("frameworks", "fastapi")),
        ("from celery import Celery", ("frameworks", "celery")),
        ("from course.delivery.sending import Sender", ("layers", "course.delivery.sending")),
        ("sender._send_batch(batch, stop_at)", ("private-call", "course.delivery.sending._send_batch")),
        ("from course.ledger import _jobs_of", ("private-call", "course.ledger._jobs_of")),
    ],
)
def test_the_checker_catches(source: str, expected: tuple[str, str]) -> None:
    assert expected in check_source("course.campaigns.example", source)


def test_the_checker_knows_content_from_sending() -> None:
    found = check_source("course.content.example", "from course.audience.enrollment import enroll")
    assert ("content-knows-nothing-of-sending", "course.audience.enrollment") in found
    assert ("layers", "course.audience.enrollment") in found


@pytest.mark.parametrize(
    "source",
    [
        "text('ANALYZE deliveries')",
        "select(Delivery).where(Delivery.state == 'sent')",
        "update(Campaign).values(status='done')",
        "self._send_batch(batch, stop_at)",
        "connection._rset()",  # smtplib's private, not ours
        "from course.models import Delivery, DeliveryState",
        "from course.ledger import cancel_campaign_rows",
    ],
)
def test_the_checker_lets_reads_and_lower_layers_pass(source: str) -> None:
    assert check_source("course.campaigns.example", source) == set()


def test_the_ledger_may_write_deliveries() -> None:
    assert check_source(LEDGER_MODULE, "update(Delivery)\nDelivery(id=1)\ntext('UPDATE deliveries SET x=1')") == set()


def documented_ledger_interface(docstring: str) -> dict[str, list[str]]:
    """The ledger docstring's interface list: each section title and the names it lists (the
    lines between "The interface, by caller" and the first blank line)."""
    block = docstring.split("The interface, by caller", 1)[1].split("\n", 1)[1].strip("\n").split("\n\n", 1)[0]
    sections: dict[str, list[str]] = {}
    title = ""
    for line in block.splitlines():
        head, colon, rest = line.partition(":")
        if not line.startswith(" ") and colon:
            title, line = head.strip(), rest
        sections.setdefault(title, []).extend(name for name in re.findall(r"\b[A-Za-z_]\w*\b", line.split("(")[0]))
    return sections


def ledger_sections_in_file(source: str) -> dict[str, list[str]]:
    """Each `# --- Title ---` section of the ledger's source and the public names defined in it."""
    tree = ast.parse(source)
    starts = [(number, line[6:].split(" (")[0].rstrip(" -")) for number, line in enumerate(source.splitlines(), 1) if line.startswith("# --- ")]
    sections: dict[str, list[str]] = {title: [] for _, title in starts}
    for node in tree.body:
        names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [
            target.id for target in getattr(node, "targets", []) if isinstance(target, ast.Name)
        ]
        for name in names:
            if not name.startswith("_"):
                title = next((t for number, t in reversed(starts) if number < node.lineno), "")
                sections.setdefault(title, []).append(name)
    return sections


def test_the_ledger_documents_every_public_name_in_the_section_of_its_caller() -> None:
    """The docstring's interface list is the ledger's public interface, grouped by caller, and each
    name is defined in the section of the file with the same title (issue #23)."""
    path = ROOT / "course" / "ledger.py"
    source = path.read_text()
    documented = documented_ledger_interface(ast.get_docstring(ast.parse(source)) or "")
    in_file = ledger_sections_in_file(source)
    assert {title: sorted(names) for title, names in documented.items()} == {
        title: sorted(names) for title, names in in_file.items() if names
    }
    assert list(documented) == [title for title, names in in_file.items() if names]


def test_the_interface_check_sees_an_undocumented_or_misplaced_name() -> None:
    source = '"""x\n\nThe interface, by caller (one section each):\n\nThe sender\'s:  take_over, record\n\nmore\n"""\n'
    source += "# --- The sender's ---\ndef take_over(): ...\n# --- Previews' reads ---\ndef record(): ...\ndef read_batch(): ...\n"
    documented = documented_ledger_interface(ast.get_docstring(ast.parse(source)) or "")
    assert documented == {"The sender's": ["take_over", "record"]}
    assert ledger_sections_in_file(source) == {"The sender's": ["take_over"], "Previews' reads": ["record", "read_batch"]}
