"""B8's staleness: a coalesced count is not counted as delivered fast when the counts before it waited."""
from bench import run as bench_run


def test_each_count_waits_until_the_client_shows_a_count_that_includes_it():
    committed = [10.0, 10.1, 10.2, 10.3]  # counts 1..4
    seen = [[(2, 10.5), (4, 11.0)],  # count 1 and 2 shown at 10.5; 3 and 4 only at 11.0
            [(4, 10.4)]]
    delays = bench_run.freshness(seen, committed, samples=4)
    assert [round(d, 2) for d in delays] == sorted(round(d, 2) for d in [0.5, 0.4, 0.8, 0.7, 0.4, 0.3, 0.2, 0.1])


def test_a_client_that_never_shows_a_count_adds_no_delay_for_it():
    assert bench_run.freshness([[(1, 5.0)]], [4.0, 4.5], samples=2) == [1.0]
    assert bench_run.freshness([[]], [], samples=2) == []
