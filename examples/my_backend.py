"""numpy-chunked: attention over blocks of keys with a running softmax (an attnbench plugin)."""

import numpy as np

from attnbench import Backend, Capabilities, Inputs, hookimpl


class NumpyChunked(Backend):
    name = "numpy-chunked"  # the id in results and on the command line (-b numpy-chunked)
    framework = "numpy"  # prepare() gets NumPy arrays shaped (batch, heads, seq, head_dim)
    description = "NumPy, keys in blocks of 16 with a running max and sum (online softmax)"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float64", "float32"))
    block = 16  # keys per block: the whole score matrix is never held

    def prepare(self, inputs: Inputs):
        group = inputs.case.heads_q // inputs.case.heads_kv  # query head h reads kv head h // group
        q, scale, b = inputs.q, inputs.q.dtype.type(inputs.scale), self.block
        k, v = np.repeat(inputs.k, group, axis=1), np.repeat(inputs.v, group, axis=1)
        visible = inputs.visible()  # (seq_q, seq_kv) bool, bottom-right causal when masked

        def run() -> np.ndarray:
            top = np.full((*q.shape[:-1], 1), -np.inf, dtype=q.dtype)  # running row max
            total, acc = np.zeros_like(top), np.zeros_like(q)  # running sum and output
            for j in range(0, k.shape[2], b):
                s = (q @ np.swapaxes(k[:, :, j:j + b], -1, -2)) * scale
                s = np.where(visible[:, j:j + b], s, -np.inf)
                new = np.maximum(top, s.max(axis=-1, keepdims=True))
                safe = np.where(np.isfinite(new), new, 0)  # a row with no key yet stays 0
                p, fix = np.exp(s - safe), np.exp(top - safe)
                total = total * fix + p.sum(axis=-1, keepdims=True)
                acc, top = acc * fix + p @ v[:, :, j:j + b], new
            return acc / np.where(total == 0, 1, total)  # rows that see no key give zeros

        return run  # prepare() is not timed; attnbench times run()


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [NumpyChunked()]
