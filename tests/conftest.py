"""Suite-wide guards: no test may leak global torch state into the tests after it."""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a GPU: skipped (not failed) on a machine without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_leaked_global_torch_state():
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    yield
    leaked_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)
    assert leaked_dtype == dtype, f"the test changed torch's default dtype to {leaked_dtype}"
