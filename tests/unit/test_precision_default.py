"""The default precision follows the CPU: bfloat16 only where it is native (else ~100x slower)."""

from __future__ import annotations

from pathlib import Path

from freshlake.embed.models import cpu_has_native_bf16, default_precision

WITH = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\nbugs\t\t: avx512_bf16x\n"
AMX = "flags\t\t: fpu avx2 amx_bf16 amx_tile\n"


def test_native_bf16_is_read_from_the_flags_line_only() -> None:
    assert cpu_has_native_bf16(WITH)
    assert cpu_has_native_bf16(AMX)
    assert not cpu_has_native_bf16(WITHOUT)
    assert not cpu_has_native_bf16("")


def test_this_machine_gets_the_precision_its_cpu_computes_natively() -> None:
    native = cpu_has_native_bf16(Path("/proc/cpuinfo").read_text())
    assert default_precision() == ("bfloat16" if native else "float32")
