"""Measurement: CPU and CUDA timers, peak memory, the matmul roof, threads, the environment."""
