"""What a benchmark run records about the process it ran in."""
import torch

from gn_det.benchmark import runner


def test_allocator_env_lists_only_the_variables_that_are_set(monkeypatch):
    for name in runner.ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "4294967296")
    monkeypatch.setenv("GLIBC_TUNABLES", "")  # set but empty: no setting
    monkeypatch.setenv("MALLOC_UNRELATED", "1")
    assert runner.allocator_env() == {"MALLOC_MMAP_THRESHOLD_": "4294967296"}


def test_device_info_records_the_allocator_env(monkeypatch):
    for name in runner.ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    info = runner._device_info(torch.device("cpu"), 1)
    assert info["allocator_env"] == {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}
    assert info["threads"] == 1
