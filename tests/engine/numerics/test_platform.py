import json

import torch

from hpo.engine.numerics.platform import COMPARED_KEYS, platform_record, platform_summary


def test_record_is_json_and_names_the_kernels():
    record = platform_record("cpu")
    assert json.loads(json.dumps(record)) == record
    assert set(COMPARED_KEYS) <= set(record)
    assert record["torch"] == torch.__version__
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["num_threads"] == torch.get_num_threads()
    assert record["device"] == "cpu" and record["cuda_device"] is None
    assert record["flags"]["cuda_matmul_allow_tf32"] == torch.backends.cuda.matmul.allow_tf32
    assert record["flags"]["deterministic_algorithms"] == (
        torch.are_deterministic_algorithms_enabled()
    )


def test_record_is_read_now_not_cached():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert platform_record()["num_threads"] == 1
    finally:
        torch.set_num_threads(before)
    assert platform_record()["num_threads"] == before


def test_summary_is_one_line():
    line = platform_summary(platform_record())
    assert "\n" not in line and torch.__version__ in line
