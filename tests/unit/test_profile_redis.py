"""bench.profile_redis: the perf samples sorted into where Redis' time goes, and the store's script
built from another copy of the .lua files (what its A/B runs compare)."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.profile_redis import PERF_GROUPS, breakdown_of
from services.counters import store
from services.counters.store import APPLY_LUA, SCRIPT_FILES, script_source

REPORT = """
# Overhead  Shared Object      Symbol
    10.50%  redis-check-rdb    [.] dictFind
     3.33%  redis-check-rdb    [.] 0x000000000015924a
     1.50%  libc.so.6          [.] __GI___printf_fp_l
     1.37%  redis-check-rdb    [.] catAppendOnlyGenericCommand
     1.77%  redis-check-rdb    [.] createEmbeddedStringObject
     2.52%  libjemalloc.so.2   [.] malloc_usable_size
     0.58%  redis-check-rdb    [.] lua_tolstring
     1.86%  [kernel.kallsyms]  [k] _raw_spin_unlock_irqrestore
     4.48%  redis-check-rdb    [.] zslInsert
"""


def test_each_sample_line_lands_in_one_group() -> None:
    shares = breakdown_of(REPORT)
    assert list(shares) == [label for label, _ in PERF_GROUPS]
    by_start = {label.split(" (")[0]: pct for label, pct in shares.items()}
    assert by_start["Lua interpreter"] == 3.3
    assert by_start["Lua C API"] == 0.6
    assert by_start["number to text and back"] == 1.5
    assert by_start["AOF"] == 1.4
    assert by_start["redis.call plumbing"] == 1.8
    assert by_start["memory allocation"] == 2.5
    assert by_start["kernel"] == 1.9
    assert by_start["the commands' own work"] == 15.0  # dictFind + zslInsert
    assert abs(sum(shares.values()) - 27.91) < 0.2  # every line counted once


def test_the_script_can_be_built_from_another_copy_of_the_lua_files(tmp_path: Path) -> None:
    for name in SCRIPT_FILES:
        shutil.copy(Path(store.__file__).with_name(name), tmp_path / name)
    assert script_source(tmp_path) == script_source() == APPLY_LUA
    (tmp_path / "counters.lua").write_text("return 1\n")
    assert script_source(tmp_path) != APPLY_LUA
    assert script_source(tmp_path).endswith("return 1\n")
