"""A test backend whose description, reasons and error text carry every markup a sink reads.

HTML and Markdown (report), rich markup and hyperlinks (terminal), mathtext (plots), ESC/OSC
sequences, a bidi override and line breaks that forge a progress line (terminal, files), and a
spreadsheet formula (CSV).
"""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

EVIL = ("<script>alert('pwned')</script> <img src=x onerror=alert(1)> | *bold* _it_ `tick` [l](u)"
        " evil[/] [link=https://attacker.example]click[/link] $\\frac{1}{$ "
        "\x1b[31mred\x1b[0m \x1b]8;;https://attacker.example\x07osc\x1b]8;;\x07 \u202eevil"
        "\nline two\r[9/9] forged: ok =HYPERLINK(\"https://attacker.example\")")


class Markup(NumpyNaive):
    name = "test-markup"
    description = "markup " + EVIL

    def unsupported(self, case):
        if case.seq_kv == 16:
            return [f"{EVIL} (unsupported on purpose)"]
        return super().unsupported(case)

    def prepare(self, inputs):
        def boom():
            raise RuntimeError(EVIL)

        return boom


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Markup()]
