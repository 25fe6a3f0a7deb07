"""The task factory's pieces that need no sandbox: sources, mutation sites, the splice
harness, splits, problem statements, the synth loader's refusals."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from selfrepair.factory import mutations, output, problem, sources
from selfrepair.factory.harness.splice import SpliceError, splice
from selfrepair.factory.mutations import (
    FAMILIES,
    candidates,
    dedent,
    function_text,
    functions,
    mutation_sites,
)

from selfrepair.errors import SelfRepairError

FIXTURE = Path(__file__).parent / "fixtures" / "synth_pkg"

SAMPLE = b'''\
import functools


def window(items, size, step=1):
    """Windows of `size` items."""
    result = []
    if size < 1 or step < 1:
        raise ValueError("size and step must be positive")
    for start in range(0, len(items) - size + 1, step):
        chunk = items[start : start + size]
        result.append(chunk)
    total = len(result) * 2
    while not result:
        break
    flag = True if total > 0 else False
    return result


class Box:
    @functools.lru_cache(maxsize=None)
    def weight(self, factor):
        def inner(x):
            return x * factor
        return inner(self.size) + 1

    class Lid:
        def opened(self):
            return self.angle >= 90 and self.locked is not True
'''


def test_functions_are_top_level_functions_and_methods_with_their_decorators():
    units = functions("sample.py", SAMPLE)
    assert [u.qualname for u in units] == ["window", "Box.weight", "Box.Lid.opened"]
    weight = units[1]
    assert weight.text(SAMPLE).startswith(
        "@functools.lru_cache(maxsize=None)\n    def weight(self, factor):"
    )
    assert weight.indent == "    " and weight.def_line == weight.start_line + 1
    assert "def inner" in weight.text(SAMPLE)  # a nested function is part of its outer one
    # the body starts after the docstring: the docstring is never mutated
    assert SAMPLE[units[0].body_start :].startswith(b"result = []")


@pytest.mark.parametrize(
    "family, before, after",
    [
        ("operator_swap", "len(items) - size", "len(items) + size"),
        ("comparison_swap", "size < 1", "size <= 1"),
        ("boolean_swap", "size < 1 or step < 1", "size < 1 and step < 1"),
        (
            "off_by_one",
            "range(0, len(items) - size + 1, step)",
            "range(0, len(items) - size, step)",
        ),
        ("off_by_one", "items[start : start + size]", "items[start : start + size + 1]"),
        ("negate_condition", "while not result:", "while result:"),
        ("drop_condition", "if size < 1 or step < 1:", "if size < 1:"),
        (
            "swap_arguments",
            "range(0, len(items) - size + 1, step)",
            "range(len(items) - size + 1, 0, step)",
        ),
        ("change_constant", "len(result) * 2", "len(result) * 1"),
        ("change_constant", "flag = True if", "flag = False if"),
        ("drop_statement", "        result.append(chunk)\n", ""),
        ("drop_return", "\n    return result", ""),
    ],
)
def test_each_family_makes_the_expected_edit(family, before, after):
    window = functions("sample.py", SAMPLE)[0]
    texts = [
        function_text(SAMPLE, window, m)
        for m in mutation_sites(SAMPLE, window)
        if m.family == family
    ]
    original = function_text(SAMPLE, window)
    assert before in original
    assert any(text == original.replace(before, after, 1) for text in texts), texts


def test_removing_a_guard_dedents_its_body_and_wrong_variable_uses_another_local():
    window = functions("sample.py", SAMPLE)[0]
    sites = mutation_sites(SAMPLE, window)
    unguarded = [
        function_text(SAMPLE, window, m) for m in sites if m.note.startswith("removed the guard")
    ]
    assert any(
        '    result = []\n    raise ValueError("size and step must be positive")\n' in t
        for t in unguarded
    )
    wrong = [m for m in sites if m.family == "wrong_variable"]
    assert wrong and all(
        m.replacement in {"items", "size", "step", "result", "start", "chunk", "total", "flag"}
        for m in wrong
    )
    # a parameter or a local is read in its place, never an attribute name or a keyword
    assert all(SAMPLE[m.start : m.end].decode() != m.replacement for m in wrong)


def test_methods_keep_their_indentation_and_every_candidate_compiles_and_changes_the_meaning():
    for unit in functions("sample.py", SAMPLE):
        original = ast.dump(ast.parse(dedent(unit.text(SAMPLE), unit.indent)))
        found = candidates(SAMPLE, unit)
        assert found, unit.qualname
        texts = [function_text(SAMPLE, unit, m) for m in found]
        assert len(set(texts)) == len(texts)  # one mutant per distinct text
        for text in texts:
            moved = dedent(text, unit.indent)
            assert moved is not None and ast.dump(ast.parse(moved)) != original
            # the whole file still compiles with the mutant in place
            compile(SAMPLE.decode().replace(unit.text(SAMPLE), text), "sample.py", "exec")


def test_candidates_cover_the_families_first_and_are_seeded():
    window = functions("sample.py", SAMPLE)[0]
    found = candidates(SAMPLE, window, seed=1)
    present = {m.family for m in found}
    assert len(present) >= 8
    assert {m.family for m in found[: len(present)]} == present  # round-robin over families
    assert [m.key for m in candidates(SAMPLE, window, seed=1)] == [m.key for m in found]
    assert [m.key for m in candidates(SAMPLE, window, seed=2)] != [m.key for m in found]
    only = candidates(SAMPLE, window, families=("comparison_swap",))
    assert only and {m.family for m in only} == {"comparison_swap"}
    assert set(FAMILIES) == set(mutations.FINDERS)


def test_splice_puts_a_function_back_into_its_module():
    module = (FIXTURE / "minicalc" / "core.py").read_text()
    data = module.encode()
    for unit in functions("minicalc/core.py", data):
        shown = dedent(unit.text(data), unit.indent)
        assert splice(module, unit.def_line, "# header comment\n" + shown + "\n") == module
    push = next(u for u in functions("minicalc/core.py", data) if u.qualname == "Stack.push")
    # what a model adds (an import, a helper) goes before the class; the method is re-indented
    reply = "import math\n\ndef helper(x):\n    return x\n\ndef push(self, item):\n    self.items.insert(0, item)\n    return helper(len(self.items))\n"
    spliced = splice(module, push.def_line, reply)
    assert "import math\n\ndef helper(x):\n    return x\n\nclass Stack:" in spliced
    assert "    def push(self, item):\n        self.items.insert(0, item)\n" in spliced
    compile(spliced, "core.py", "exec")
    # a model that answers with the class around the method
    wrapped = "class Stack:\n    def push(self, item):\n        return 7\n"
    assert "    def push(self, item):\n        return 7\n" in splice(module, push.def_line, wrapped)
    with pytest.raises(SpliceError, match="no function named 'push'"):
        splice(module, push.def_line, "def pop(self):\n    return 1\n")
    with pytest.raises(SpliceError, match="line 1"):
        splice(module, push.def_line, "def push(self:\n")


def test_a_function_whose_string_would_change_when_moved_is_not_offered_at_column_zero():
    source = b'class A:\n    def f(self):\n        return """x\nat column zero"""\n'
    (unit,) = functions("a.py", source)
    assert dedent(unit.text(source), unit.indent) is None


def test_sources_from_a_directory_and_their_test_files(tmp_path):
    source = sources.resolve(str(FIXTURE))
    assert (
        source.kind == "directory"
        and source.repo == "local/synth_pkg"
        and source.slug == "local__synth_pkg"
    )
    assert source.code_files() == ["minicalc/__init__.py", "minicalc/core.py"]
    assert source.test_files() == ["tests/test_core.py"]


def test_bad_sources_are_refused_in_one_line(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "mod.py").write_text("def f():\n    return 1\n")
    with pytest.raises(SelfRepairError, match="holds no tests"):
        sources.resolve(str(tmp_path / "code"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SelfRepairError, match="no Python files"):
        sources.resolve(str(tmp_path / "empty"))
    with pytest.raises(SelfRepairError, match="no such file"):
        sources.resolve(str(tmp_path / "missing" / "pkg"))
    with pytest.raises(SelfRepairError, match="not a PyPI requirement"):
        sources.resolve("not a requirement!")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(SelfRepairError, match="not a directory, a git repository or an sdist"):
        sources.resolve(str(tmp_path / "notes.txt"))


def test_an_sdist_without_tests_is_refused(tmp_path):
    import tarfile

    folder = tmp_path / "lib-1.0"
    (folder / "lib").mkdir(parents=True)
    (folder / "lib" / "__init__.py").write_text("def f():\n    return 1\n")
    (folder / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: lib\nVersion: 1.0\n")
    archive = tmp_path / "lib-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="lib-1.0")
    with pytest.raises(SelfRepairError, match="its sdist carries no tests"):
        sources.resolve(str(archive))


def test_declared_requirements_are_read_for_the_sandbox_python():
    pkg_info = (
        b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
        b"Requires-Dist: attrs>=22\n"
        b"Requires-Dist: tomli; python_version < '3.11'\n"
        b"Requires-Dist: hypothesis; extra == 'test'\n"
        b"Requires-Dist: sphinx; extra == 'docs'\n"
    )
    assert sources.declared_requirements({"PKG-INFO": pkg_info}) == ["attrs>=22", "hypothesis"]
    pyproject = b'[project]\nname = "demo"\ndependencies = ["toolz"]\n[project.optional-dependencies]\ntests = ["pytest-mock"]\n'
    assert sources.declared_requirements({"pyproject.toml": pyproject}) == ["toolz", "pytest-mock"]
    assert sources.declared_requirements({"setup.py": b"setup()"}) == []


def test_pip_failures_become_one_actionable_line():
    refused = "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError'\nERROR: No matching distribution found for toolz"
    assert "cannot reach the package index" in sources.pip_reason(refused, "toolz")
    assert sources.pip_reason("ERROR: No matching distribution found for toolz==9", "toolz") == (
        "no sdist of toolz matching this requirement on the package index"
    )


def bug(source: str, path: str, function: str) -> output.Bug:
    return output.Bug(
        instance_id=f"{source}.{path}.{function}",
        source=source,
        path=path,
        function=function,
        def_line=1,
        indent="",
        family="operator_swap",
        note="",
        mutation_key="k",
        span=(0, 1),
        replacement="",
        original_function="",
        buggy_function="",
        fail_to_pass=["t.py::a"],
        pass_to_pass=[],
        failures=[],
    )


def test_splits_keep_every_module_and_package_on_one_side():
    bugs = [
        bug(f"pypi/p{p}", f"m{m}.py", f"f{f}") for p in range(3) for m in range(4) for f in range(3)
    ]
    for by in ("module", "package"):
        sides = output.split_units(bugs, by, 0.25, [], seed=0)
        assert set(sides.values()) == {"train", "eval"}
        held = sum(sides[output.unit_of(b, by)] == "eval" for b in bugs)
        assert 0 < held <= 0.25 * len(bugs) or by == "package"
        seen: dict[tuple, set] = {}
        for b in bugs:
            seen.setdefault((b.source, b.path), set()).add(sides[output.unit_of(b, by)])
        assert all(
            len(s) == 1 for s in seen.values()
        )  # never one module (so one function) on both sides
    named = output.split_units(bugs, "module", 0.25, ["pypi/p1"], seed=0)
    assert {u for u, s in named.items() if s == "eval"} == {f"pypi/p1:m{m}.py" for m in range(4)}
    assert output.split_units(bugs[:3], "module", 0.2, [], seed=0) == {"pypi/p0:m0.py": "train"}


def test_the_problem_statement_comes_from_the_failing_tests_only():
    failures = [
        {
            "name": "tests/test_x.py::test_take",
            "message": "assert [1, 2, 3] == [1, 2]",
            "traceback": "def test_take():\n>       assert take(2, [1, 2, 3]) == [1, 2]\nE       assert [1, 2, 3] == [1, 2]",
        }
    ]
    text = problem.from_tests(
        "pypi/demo-1.0", failures, ["tests/test_x.py::test_take", "tests/test_x.py::test_other"]
    )
    assert text.startswith("2 tests of pypi/demo-1.0 fail.")
    assert "`tests/test_x.py::test_take` fails: assert [1, 2, 3] == [1, 2]" in text
    assert (
        "E       assert [1, 2, 3] == [1, 2]" in text
        and "Also failing: `tests/test_x.py::test_other`" in text
    )


def test_the_synth_loader_refuses_lines_without_their_mirror(tmp_path):
    from selfrepair.loaders import load_synth, load_tasks
    from selfrepair.types import Task, TestSpec

    task = Task(
        task_id="t",
        spec="s",
        files={"_function/f.py": "def f():\n    pass\n"},
        entry_file="_function/f.py",
        tests=TestSpec(kind="command", command="true"),
        metadata={"synth": {"mirror": "repos/gone", "commit": "a" * 40, "test_commit": "b" * 40}},
    )
    data = tmp_path / "functions.jsonl"
    data.write_text(task.model_dump_json() + "\n")
    with pytest.raises(
        SelfRepairError, match=r"functions.jsonl:1: the package's mirror .*repos/gone is missing"
    ):
        load_tasks("synth", data)
    plain = task.model_copy(update={"metadata": {}})
    data.write_text(json.dumps(json.loads(plain.model_dump_json())) + "\n")
    with pytest.raises(SelfRepairError, match="not a synth task"):
        load_synth(data)


def test_a_function_body_is_never_emptied():
    source = b'def f(x):\n    """Twice x."""\n    return x * 2\n\n\ndef g(x):\n    y = x + 1\n    return y\n'
    f, g = functions("m.py", source)
    assert not [
        m for m in mutation_sites(source, f) if m.family in ("drop_return", "drop_statement")
    ]
    assert {m.family for m in mutation_sites(source, g)} >= {"drop_return", "drop_statement"}
