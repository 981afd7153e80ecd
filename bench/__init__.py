"""keyturn's benchmark suite.

Everything here measures *ratios* taken in the same run (A/B interleaved), never absolute numbers
that could pass or fail: a laptop, a CI box and a 2-core VM disagree on req/s, but they mostly agree
on "guarded is 0.8x unguarded". Entry point: ``bash bench/run.sh`` (installs what it needs, then
runs ``python -m bench``).
"""
