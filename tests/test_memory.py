"""Process memory: the resident size reading and handing free heap back to the OS."""
import numpy as np
import pytest

from app.memory import rss_mb, trim_heap
from models.optimize import tune_cpu_allocator


def test_trim_heap_returns_what_the_tuned_allocator_keeps():
    """With the pose model's allocator setting, a freed 200 MB block stays resident (that is
    the point of the setting); trim_heap hands it back, which is what keeps long runs flat."""
    if not tune_cpu_allocator():
        pytest.skip("the C library is not glibc")
    trim_heap()                                  # earlier tests leave free memory kept
    before = rss_mb()
    block = np.ones(200_000_000 // 8)            # touched: 200 MB resident
    assert rss_mb() > before + 150
    del block
    kept = rss_mb()
    assert trim_heap()
    after = rss_mb()
    assert kept - after > 150, (before, kept, after)
