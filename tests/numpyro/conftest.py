"""Fixtures shared by the NumPyro backend's tests."""

import jax
import pytest


@pytest.fixture
def float64():
    """Run a test with 64-bit JAX arrays, restoring the previous setting afterwards."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)
