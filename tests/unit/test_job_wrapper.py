"""R31: every piece of background work goes through the one enqueue wrapper (serializer, bounded
retries, timeouts, failure TTL): no RQ enqueue call anywhere else in the application."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RQ_ENQUEUES = {"enqueue", "enqueue_call", "enqueue_in", "enqueue_at", "enqueue_many", "enqueue_job"}


def _the_wrapper(func):
    """`jobs.enqueue(…)`: the wrapper itself, called from another module."""
    return func.attr == "enqueue" and isinstance(func.value, ast.Name) and func.value.id == "jobs"


def _raw_enqueues(tree):
    """(line, call) of each `<something>.enqueue…(` call outside a function named `enqueue`."""
    found = []

    def visit(node, inside_wrapper):
        for child in ast.iter_child_nodes(node):
            wrapper = inside_wrapper or (isinstance(child, ast.FunctionDef) and child.name == "enqueue")
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                    and child.func.attr in RQ_ENQUEUES and not wrapper
                    and not _the_wrapper(child.func)):
                found.append((child.lineno, ast.unparse(child.func)))
            visit(child, wrapper)

    visit(tree, False)
    return found


def test_the_check_finds_a_raw_enqueue():
    tree = ast.parse("def start(q):\n    q.enqueue(work, 1)\n    jobs.enqueue(work, 2)\n    jobs.enqueue_in(t, work)\n"
                     "\ndef enqueue(q):\n    q.enqueue_call(work)\n")
    assert _raw_enqueues(tree) == [(2, "q.enqueue"), (4, "jobs.enqueue_in")]


def test_no_raw_rq_enqueue_outside_the_wrapper():
    offenders = []
    for folder, _dirs, files in os.walk(os.path.join(ROOT, "app")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as fh:
                    tree = ast.parse(fh.read(), path)
                offenders += [(os.path.relpath(path, ROOT), line, call) for line, call in _raw_enqueues(tree)]
    assert offenders == []
