"""OU observation noise (stiffbench.noise): paper eq. 9, fixed realisation per seed."""

import numpy as np
import pytest

from stiffbench.noise import ou_noise, ou_sigma_for_std


def test_first_steps_by_hand():
    dt, theta, sigma = 0.1, 2.0, np.array([1.0, 0.5])
    normals = np.random.default_rng(7).standard_normal((2, 2))
    xi1 = sigma * np.sqrt(dt) * normals[0]
    xi2 = xi1 - theta * xi1 * dt + sigma * np.sqrt(dt) * normals[1]
    xi = ou_noise(3, dt, theta, sigma, seed=7)
    assert xi.shape == (3, 2)
    np.testing.assert_array_equal(xi[0], 0.0)
    np.testing.assert_allclose(xi[1:], [xi1, xi2], rtol=1e-14, atol=0)


def test_matches_the_euler_maruyama_loop():
    dt, theta, sigma = 0.01, 5.0, np.array([0.5, 0.0018, 0.2])
    normals = np.random.default_rng(3).standard_normal((199, 3))
    expected = np.zeros((200, 3))
    for k in range(199):
        expected[k + 1] = expected[k] - theta * expected[k] * dt + sigma * np.sqrt(dt) * normals[k]
    np.testing.assert_allclose(ou_noise(200, dt, theta, sigma, seed=3), expected, rtol=1e-12, atol=1e-15)


def test_fixed_seed_reproducible_and_seed_matters():
    a = ou_noise(500, 0.01, 5.0, [0.5] * 4, seed=1111)
    np.testing.assert_array_equal(a, ou_noise(500, 0.01, 5.0, [0.5] * 4, seed=1111))
    assert not np.allclose(a, ou_noise(500, 0.01, 5.0, [0.5] * 4, seed=1112))


def test_stationary_std_and_zero_channel():
    theta, sigma = 5.0, np.array([0.5, 2.0, 0.0])
    xi = ou_noise(400_000, 0.01, theta, sigma, seed=0)
    np.testing.assert_allclose(xi[1000:, :2].std(axis=0), sigma[:2] / np.sqrt(2 * theta), rtol=0.05)
    np.testing.assert_array_equal(xi[:, 2], 0.0)


def test_single_sample_is_zero():
    np.testing.assert_array_equal(ou_noise(1, 0.01, 5.0, [0.5, 0.5], seed=0), np.zeros((1, 2)))


def test_sigma_for_std_inverts_stationary_std():
    np.testing.assert_allclose(ou_sigma_for_std([0.158, 1.0], 5.0) / np.sqrt(2 * 5.0), [0.158, 1.0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sigma": [-0.1, 0.5]},
        {"sigma": [[0.5]]},
        {"sigma": [np.nan]},
        {"n_samples": 0},
        {"dt": 0.0},
        {"theta": 0.0},
        {"theta": 300.0},
    ],
)
def test_invalid_arguments(kwargs):
    args = {"n_samples": 10, "dt": 0.01, "theta": 5.0, "sigma": [0.5], "seed": 0, **kwargs}
    with pytest.raises(ValueError):
        ou_noise(**args)
