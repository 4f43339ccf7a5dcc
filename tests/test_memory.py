"""Process memory: the resident size reading and handing free heap back to the OS."""
import numpy as np
import pytest

from app.memory import keep_freed_memory, rss_mb, trim_heap


def test_a_run_keeps_freed_memory_trims_it_and_gives_the_defaults_back():
    """Within keep_freed_memory (a frame loop's run) a freed 200 MB block stays resident (that
    is the point of the setting); trim_heap hands it back, which is what keeps long runs flat;
    after the block glibc's defaults are back, so a freed block leaves at once."""
    with keep_freed_memory() as applied:
        if not applied:
            pytest.skip("the C library is not glibc")
        trim_heap()                                  # earlier tests leave free memory kept
        before = rss_mb()
        block = np.ones(200_000_000 // 8)            # touched: 200 MB resident
        assert rss_mb() > before + 150
        del block
        kept = rss_mb()
        assert kept > before + 150                   # freed, but kept
        assert trim_heap()
        after = rss_mb()
        assert kept - after > 150, (before, kept, after)
    before = rss_mb()
    block = np.ones(200_000_000 // 8)
    assert rss_mb() > before + 150
    del block
    assert rss_mb() < before + 50                    # the default: a large block goes back at once
