"""What a compiled XLA program costs per chip: flops and HBM bytes (XLA's cost analysis), memory (its
memory analysis), and the bytes its collectives move between chips (counted from its HLO)."""

from __future__ import annotations

import re

_SIZE = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
                "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_COLLECTIVE = re.compile(
    r"=\s*(?P<out>.*?)\s(?P<op>all-gather|all-reduce|reduce-scatter|all-to-all|collective-permute)"
    r"(?P<start>-start)?\((?P<args>[^)]*)\)")
_ARRAY = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\]")


def cost(compiled) -> tuple[float, float, float]:
    """Per chip (flops, HBM bytes accessed, bytes received over the interconnect) of one run."""
    c = compiled.cost_analysis()
    if isinstance(c, list):
        c = c[0] if c else {}
    return float(c.get("flops", 0.0)), float(c.get("bytes accessed", 0.0)), float(collective_bytes(compiled.as_text()))


def memory(compiled) -> tuple[int, int, int, int, int]:
    """(argument, output, alias, temporary, generated code) bytes per chip."""
    m = compiled.memory_analysis()
    return (int(m.argument_size_in_bytes), int(m.output_size_in_bytes), int(m.alias_size_in_bytes),
            int(m.temp_size_in_bytes), int(m.generated_code_size_in_bytes))


def _array_bytes(text: str) -> list[int]:
    out = []
    for dtype, dims in _ARRAY.findall(text):
        if dtype in _DTYPE_BYTES:
            n = 1
            for d in filter(None, dims.split(",")):
                n *= int(d)
            out.append(n * _DTYPE_BYTES[dtype])
    return out


def collective_bytes(hlo: str) -> int:
    """Bytes one chip receives in the collectives of an HLO module (each op counted once, as written):
    an all-gather its result, an all-reduce twice its operand (reduce-scatter then all-gather), a
    reduce-scatter its operand, an all-to-all or collective-permute its result. Ring algorithms receive
    (n-1)/n of these; the rest of the way is ignored."""
    total = 0
    for m in _COLLECTIVE.finditer(hlo):
        op, out, args = m.group("op"), _array_bytes(m.group("out")), _array_bytes(m.group("args"))
        if m.group("start"):  # an async start's result is (operands..., results...): keep the results
            out = out[len(args):] or out[-1:]
        if op == "all-reduce":
            total += 2 * sum(args or out)
        elif op == "reduce-scatter":
            total += sum(args or out)
        else:
            total += sum(out)
    return total


def exhausted_bytes(exc: Exception) -> int | None:
    """The bytes XLA says a program needs when it refuses to compile it for lack of HBM, else None."""
    text = str(exc)
    if "RESOURCE_EXHAUSTED" not in text:
        return None
    m = re.search(r"required for [^(]*\(([\d.]+)([KMGT])\)", text) or re.search(r"([\d.]+)([KMGT])", text)
    return int(float(m.group(1)) * _SIZE[m.group(2)]) if m else None
