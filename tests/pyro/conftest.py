"""Fixtures shared by the Pyro backend's tests."""

import pytest
import torch


@pytest.fixture
def float64():
    """Run a test with torch's default dtype float64, restoring it afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
