"""The device probe's quick answer: on Linux, no GPU driver's device files means no CUDA
(torch, seconds to import, is not asked); where a file exists, torch is asked."""

from __future__ import annotations

import sys

import pytest

from attnbench.plugin.probes import device_failure, no_gpu_driver


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the device files are Linux's")
def test_no_device_file_means_no_driver_and_one_file_means_ask_torch(tmp_path):
    present = tmp_path / "nvidia0"
    present.write_text("")
    assert no_gpu_driver((str(tmp_path / "nvidiactl"), str(tmp_path / "dxg")))
    assert not no_gpu_driver((str(tmp_path / "nvidiactl"), str(present)))


def test_cuda_is_refused_with_the_reason_where_no_driver_is_found():
    if not no_gpu_driver():
        pytest.skip("a GPU driver's device file exists here: torch decides")
    why = device_failure("cuda")
    assert why is not None and "no NVIDIA driver's device files" in why
