"""Unit roundoffs, how many roundings a correct kernel makes, and the rounding model of one block.

A block is one kv head with its query heads on some rows, every key (verify/rounding.py runs
them all). `Block.model` gives the oracle there and what a correct kernel errs (see Model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnbench import variants
from attnbench.case import Case
from attnbench.verify.reference import BLOCK_ENTRIES, row_visibility

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11,
                 "bfloat16": 2.0**-8}
ACC_ROUNDOFF = {**UNIT_ROUNDOFF, "float16": 2.0**-24, "bfloat16": 2.0**-24}
# half the spacing of the dtype's subnormals: the absolute rounding error of a tiny value
TINY = {"float64": 2.0**-1075, "float32": 2.0**-150, "float16": 2.0**-25, "bfloat16": 2.0**-134}
# The variance of one round-to-nearest of x, averaged over where x falls between powers of two
# (log-uniformly): u²x² (1/2 − 1/8) / (3 ln 2); at worst (x a power of two) it is u²x²/3.
RNE_VARIANCE = (0.5 - 0.125) / (3 * np.log(2))
MODEL_BLOCK_ENTRIES = BLOCK_ENTRIES // 4  # the model holds ~12 score-sized arrays per block
MAX_SCORE_VAR = 300.0  # beyond this variance of a score error every weight is unknown


@dataclass(frozen=True)
class Coefficients:
    """How many roundings of each kind a correct kernel makes (each of variance
    RNE_VARIANCE·u²x², u the dtype's unit roundoff or u_acc the accumulator's where said)."""

    score: float = 1.0  # of the score s = q·k·scale: the matmul's output
    scale: float = 1.0  # of s again: the scale multiply (or else the prescale below)
    prescale: float = 2.0  # of q_t·sqrt(scale) and k_t·sqrt(scale): Σ_t q_t² k_t² scale²
    dot: float = 0.5  # × D, in u_acc: the dot product summed in order, whose partial sums
    #                   walk and drift: Σ_t S_t² ≈ D (Σ q²k²/2 + (q·k)²/3)
    softcap: float = 2.0  # of cap·tanh(s/cap): tanh's result and the multiply (the divide is
    #                       one more rounding of s)
    terms: float = 2.0  # in u_acc, of ALiBi/bias and of the score they are added to
    shift: float = 1.0  # in u_acc, of s − max_j s_j, the exponential's argument
    shifted: float = 2.0  # of the row-shifted terms and their sum, where added in the dtype
    weight: float = 2.0  # of each weight p: exp's result and the normalised weight
    exp: float = 4.0  # × u_acc² (not a rounding): the variance of a fast exp's relative error,
    #                   2 units in the last place rms (numba-cpu's polynomial: 1.7, max 4.6)
    relative: float = 1.0  # of a row's denominator (a relative error the whole row shares)
    sums: float = 1.0  # × L, in u_acc: L terms summed in order (o²/3 + Σ p² v²/2); BLAS's
    #                    float32 p·v measures 0.65 of it


DEFAULT = Coefficients()
# Every bfloat16 kernel known (torch's softmax, fused kernels) rounds a weight once and keeps
# the denominator in float32; NumPy's float16 (numpy-naive) rounds exp, p and the denominator.
DEFAULTS = {"bfloat16": Coefficients(weight=1.0, relative=0.0)}


class Block:
    """One kv head with its query heads on some rows: scores, weights and the model there."""

    def __init__(self, arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray, b: int,
                 h: int, heads: np.ndarray):
        self.case, self.rows, self.b, self.heads = case, rows, b, heads
        self.bias = arrays.get("bias")
        self.q = arrays["q"][b, heads][:, rows, :]  # (G, R, D)
        self.k, self.v = arrays["k"][b, h], arrays["v"][b, h]  # (L, D), (L, Dv)
        self.vis = row_visibility(case, rows, b)  # (R, L)
        sinks = arrays.get("sinks")
        self.sinks = None if sinks is None else sinks[heads]  # (G,)
        if self.sinks is not None:  # one more key, seen by every row: k = 0, v = 0
            self.k = np.concatenate([self.k, np.zeros((1, self.k.shape[1]))])
            self.v = np.concatenate([self.v, np.zeros((1, self.v.shape[1]))])
            self.vis = np.concatenate([self.vis, np.ones((len(rows), 1), dtype=bool)], axis=1)

    def scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(s1, s, shifted): q·k·scale, the final scores (softcap, terms, −inf where masked)
        and, with ALiBi or a bias, what a kernel adding Inputs.additive_mask in its dtype
        rounds: the scores less each row's largest visible ALiBi term (None without terms)."""
        case = self.case
        s1 = np.matmul(self.q, self.k.T)
        s1 *= case.softmax_scale
        s = variants.apply_softcap(s1.copy(), case.softcap)
        terms = variants.score_terms(case, self.b, self.heads, self.rows, self.bias)
        if terms is not None and self.sinks is not None:  # the sink's key has no terms
            terms = np.concatenate([terms, np.zeros((*terms.shape[:-1], 1))], axis=-1)
        if self.sinks is not None:  # its score is the sink logit (s1 stays 0: no q·k there)
            s[..., -1] = self.sinks[:, None]
        shifted = None
        if terms is not None:
            s += terms
            shifted = np.where(self.vis, s, 0.0)
            if self.sinks is not None:  # the sink's logit is exact: nothing rounded there
                shifted[..., -1] = 0.0
            alibi = variants.score_terms(case, self.b, self.heads, self.rows, None)
            if case.alibi and alibi is not None:
                keys = self.vis[:, :alibi.shape[-1]]  # the sink's column has no ALiBi term
                top = np.where(keys, alibi, -np.inf).max(axis=-1, keepdims=True)
                shifted[..., :keys.shape[-1]] -= np.where(
                    keys, np.where(np.isfinite(top), top, 0.0), 0.0)
        np.copyto(s, -np.inf, where=~self.vis)
        return s1, s, shifted

    def model(self, coef: Coefficients) -> dict[str, np.ndarray]:
        """The block's part of every field of verify/rounding.Model."""
        dt, v = self.case.dtype, self.v
        u, ua = (np.sqrt(RNE_VARIANCE) * x for x in (UNIT_ROUNDOFF[dt], ACC_ROUNDOFF[dt]))
        s1, s, shifted = self.scores()
        work = np.float64 if dt == "float64" else np.float32  # the weights' own precision
        var_s = self._score_variance(s1.astype(work), s, shifted, coef, u, ua)
        del shifted
        p = _softmax(s)
        o = np.matmul(p, v)
        top = Top(p, v, o)
        temp = self._temperature(s1, p, o, top)
        drift, w1, w1_top, wk = self._weights(p.astype(work), var_s, o, top, coef, u, ua)
        vw = v.astype(work)
        var = np.matmul(w1 + wk, vw * vw).astype(np.float64)
        var -= 2 * o * np.matmul(w1, vw)
        var += o * o * w1.sum(axis=-1, keepdims=True, dtype=np.float64)
        np.maximum(var, 0.0, out=var)  # cancellation can leave tiny negatives
        var += w1_top * top.d * top.d
        rho = coef.relative * u * u + coef.sums * ua * ua * self.seen / 3
        var += rho * o * o
        spread, heaviest, scale, scale_t = self._per_key(o, temp, w1, w1_top, wk, top)
        det = UNIT_ROUNDOFF[dt] * np.abs(o) + np.abs(drift) + TINY[dt]
        if dt == "float64":  # the float64 oracle errs as much as the kernel does
            var, rho, det, spread = 2 * var, 2 * rho, 2 * det, 4 * spread
            heaviest = 2 * heaviest
            scale, scale_t = 2 * scale, 2 * scale_t
        vmax = np.where(self.vis, np.abs(v).max(axis=1)[None, :], 0.0).max(axis=1)
        cap = (np.abs(o).max(axis=-1, keepdims=True) + vmax[:, None]) * (1 + 4 * u) + TINY[dt]
        empty = ~np.asarray(self.vis.any(axis=1))[:, None]
        parts = {"ref": o, "det": det, "sigma": np.sqrt(var), "temp": temp, "drift": drift,
                 "rho": rho + 0 * cap, "cap": cap, "key_spread": spread, "key_max": heaviest,
                 "key_scale": scale, "key_temp": scale_t}
        return {n: np.where(empty, 0.0, x) for n, x in parts.items()}

    @property
    def seen(self) -> np.ndarray:
        """(R, 1): how many keys each row sees."""
        return self.vis.sum(axis=1)[:, None]

    def _weights(self, p: np.ndarray, var_s: np.ndarray, o: np.ndarray, top: Top,
                 coef: Coefficients, u: float, ua: float) -> tuple[np.ndarray, ...]:
        """(drift, w1, w1_top, wk): the drift of the output; the weights of (v_jt − o_t)² (the
        score errors; 0 at each row's heaviest key, whose weight is w1_top) and of v_jt² (the
        weights' own roundings and the sums). p (working precision) and var_s are consumed."""
        small = float(var_s.max(initial=0.0)) < 1e-3  # first order is exact to 1e-6 there
        tilt = p * (var_s / 2 if small else np.expm1(var_s / 2))  # E[e^e] − 1: a drift
        drift = top.term(tilt) + np.matmul(tilt, self.v.astype(p.dtype))
        drift -= o * tilt.sum(axis=-1, keepdims=True, dtype=np.float64)
        del tilt
        np.multiply(p, p, out=p)  # p² from here on
        w1 = var_s
        w1 *= (1 + 0.875 * var_s) if small else _exp_factor(var_s)
        w1 *= p
        w1_top = top.take(w1)
        wk = p
        exp = coef.exp * ACC_ROUNDOFF[self.case.dtype] ** 2
        wk *= coef.weight * u * u + exp + coef.sums * ua * ua * self.seen / 2
        if self.case.dtype == "float16":  # weights below the normal range: a multiple of 2^-24
            wk += np.where(self.vis, coef.weight * RNE_VARIANCE * TINY["float16"] ** 2, 0.0)
        return drift, w1, w1_top, wk

    def _temperature(self, s1: np.ndarray, p: np.ndarray, o: np.ndarray, top: Top
                     ) -> np.ndarray:
        """d o / d log(scale) = Σ_j p_j (d s_j / d log scale) (v_j − o); s1 is overwritten."""
        if self.case.softcap is not None:  # through the softcap: × (1 − tanh²)
            s1 /= np.cosh(s1 / self.case.softcap) ** 2
        s1 *= p
        lead = top.term(s1)
        return lead + np.matmul(s1, self.v) - o * s1.sum(axis=-1, keepdims=True)

    def _per_key(self, o: np.ndarray, temp: np.ndarray, w1: np.ndarray, w1_top: np.ndarray,
                 wk: np.ndarray, top: Top) -> tuple[np.ndarray, ...]:
        """A key's error moves every channel of a row at once. Per row: Σ_j a_j² and max_j a_j,
        a_j the variance key j adds to Σ_t err_t²; the variance key errors add to Σ_t o_t err_t and
        to Σ_t temp_t err_t (key j adds w1_j (x·(v_j − o))² + wk_j (x·v_j)² to Σ_t x_t err_t).
        w1 is 0 at each row's heaviest key, whose part (w1_top) is added exactly."""
        work = w1.dtype
        v = self.v.astype(work)
        norm_v = (v * v).sum(axis=1)  # |v_j|²

        def projected(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            xw = x.astype(work)
            dot = np.matmul(xw, v.T)  # x_i · v_j
            var = np.einsum("...j,...j,...j->...", wk, dot, dot)[..., None]
            dot -= (xw * o).sum(axis=-1, keepdims=True, dtype=work)  # x_i · (v_j − o_i)
            var += np.einsum("...j,...j,...j->...", w1, dot, dot)[..., None]
            var += w1_top * (x * top.d).sum(axis=-1, keepdims=True) ** 2
            return dot, var

        scale_t = projected(temp)[1]
        dot, scale = projected(o)
        dot *= -2
        dot += norm_v
        dot -= (o * o).sum(axis=-1, keepdims=True, dtype=work)  # |v_j − o_i|²
        dot *= w1
        dot += wk * norm_v  # a_j (the heaviest key's without its w1 part)
        spread = np.einsum("...j,...j->...", dot, dot)[..., None].astype(np.float64)
        a_top = np.take_along_axis(wk, top.index, axis=-1) * top.norm_v
        full_top = a_top + w1_top * (top.d * top.d).sum(axis=-1, keepdims=True)
        spread += full_top ** 2 - a_top * a_top
        heaviest = np.maximum(dot.max(axis=-1, keepdims=True, initial=0.0), full_top)
        return (spread, heaviest.astype(np.float64), scale.astype(np.float64),
                scale_t.astype(np.float64))

    def _score_variance(self, sq: np.ndarray, s: np.ndarray, shifted: np.ndarray | None,
                        coef: Coefficients, u: float, ua: float) -> np.ndarray:
        """Variance of each score's error in a correct kernel (see Coefficients); sq holds
        q·k·scale on entry, in the working precision, and is overwritten."""
        case, work = self.case, sq.dtype
        qq = (self.q * self.q * case.softmax_scale ** 2).astype(work)
        m2 = np.matmul(qq, (self.k * self.k).T.astype(work))  # Σ_t q_t² k_t² scale²
        t = np.tanh(sq / case.softcap) if case.softcap is not None else None
        np.multiply(sq, sq, out=sq)
        var = m2 * coef.prescale
        np.maximum(var, coef.scale * sq, out=var)  # a kernel does one or the other
        var += coef.score * sq
        if case.softcap is not None and t is not None:  # d(cap·tanh(x/cap))/dx = 1 − tanh²
            var += sq  # the divide
            var *= (1 - t * t) ** 2
            var += coef.softcap * (case.softcap * t) ** 2
        var *= u * u
        if ua * ua * case.head_dim > 1e-6 * u * u:  # the dot product's sum (not in half types)
            m2 += 2 / 3 * sq
            m2 *= coef.dot * ua * ua * case.head_dim
            var += m2
        if shifted is not None:  # ALiBi/bias: added in u_acc, or shifted in the dtype
            total = np.where(self.vis, s, 0.0)
            var += coef.terms * ua * ua * total * total + coef.shifted * u * u * shifted ** 2
        top = s.max(axis=-1, keepdims=True)
        below = np.where(self.vis, s - np.where(np.isfinite(top), top, 0.0), 0.0)
        var += coef.shift * ua * ua * below * below
        return np.minimum(var, MAX_SCORE_VAR, out=var)


def _softmax(s: np.ndarray) -> np.ndarray:
    """Row softmax of scores with −inf where masked; a row with no visible key gives zeros."""
    m = s.max(axis=-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    den = p.sum(axis=-1, keepdims=True)
    p /= np.where(den == 0, 1.0, den)
    return p


def _exp_factor(var: np.ndarray) -> np.ndarray:
    """E[(e^x − 1)²] / σ² for x ~ N(0, σ²): 1 for small errors, growing like e^(2σ²)."""
    num = np.expm1(2 * var) - 2 * np.expm1(var / 2)
    return np.where(var > 0, num / np.where(var > 0, var, 1.0), 1.0)


class Top:
    """Each row's heaviest key, kept out of the matmuls: there v_j − o is nearly 0 while its
    weight may be huge (a near one-hot row), and x·v² − 2o·x·v + o²·x would cancel."""

    def __init__(self, p: np.ndarray, v: np.ndarray, o: np.ndarray):
        self.index = np.argmax(p, axis=-1)[..., None]  # (G, R, 1)
        lead = v[self.index[..., 0]]  # (G, R, Dv)
        self.d = lead - o  # v_top − o, exactly enough
        self.norm_v = (lead * lead).sum(axis=-1, keepdims=True)

    def take(self, w: np.ndarray) -> np.ndarray:
        """The weights at the heaviest keys (G, R, 1), set to 0 in w."""
        got = np.take_along_axis(w, self.index, axis=-1).copy()
        np.put_along_axis(w, self.index, 0, axis=-1)
        return got

    def term(self, w: np.ndarray) -> np.ndarray:
        """w_top · (v_top − o), with w_top taken out of w (see take)."""
        return self.take(w) * self.d
