"""The equivalent-mutant table of benchmarks/mutation_score.py: an entry ``LINE:N`` names
one mutant of a line that has the same change twice."""

from test_mutation_score import ms  # noqa: F401 (the driver as a module; tests/ is on sys.path)


def test_an_entry_with_the_mutant_number_matches_that_mutant_only(ms, tmp_path):  # noqa: F811
    table = tmp_path / "equivalent.txt"
    table.write_text("pkg/a.py:7:3 | 0 -> 1 | the first 0 only\npkg/b.py:2 | 0 -> 1 | any\n")
    entries = ms.read_equivalents(table)
    assert [(e.module, e.line, e.number) for e in entries] == [
        ("pkg/a.py", 7, 3),
        ("pkg/b.py", 2, None),
    ]

    def mutant(module, line, n):
        return ms.Mutant(f"{module}:{line}:{n}", "pkg", module, line, 0, "constant", "0", "1", "")

    a3, a4 = mutant("pkg/a.py", 7, 3), mutant("pkg/a.py", 7, 4)
    b1, b5 = mutant("pkg/b.py", 2, 1), mutant("pkg/b.py", 2, 5)
    every = [a3, a4, b1, b5]
    assert ms.match_equivalent(a3, entries, every) is entries[0]
    assert ms.match_equivalent(a4, entries, every) is None
    assert ms.match_equivalent(b1, entries, every) is entries[1]
    assert ms.match_equivalent(b5, entries, every) is entries[1]
