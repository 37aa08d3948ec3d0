"""Constants shared by C and Python have one value: each Python mirror equals its header."""

import pathlib
import re

from gumbelkit import _rng
from gumbelkit.kernels import _lib, sampler_reference

CSRC = pathlib.Path(_lib.__file__).parent / "csrc"


def _enum(text: str, prefix: str) -> dict[str, int]:
    """``NAME = value`` pairs of the C enumerators whose names start with ``prefix``."""
    return {name[len(prefix):].lower(): int(value, 0)
            for name, value in re.findall(rf"\b({prefix}\w+)\s*=\s*(\w+)", text)}


def _defines(text: str, prefix: str) -> dict[str, int]:
    return {name[len(prefix):]: int(value.rstrip("uU"), 0)
            for name, value in re.findall(rf"#define ({prefix}\w+) (0x[0-9A-Fa-f]+u?)", text)}


def test_noise_kinds_match_noise_h():
    assert _enum((CSRC / "noise.h").read_text(), "GK_NOISE_") == _lib.KINDS


def test_philox_constants_match_noise_h():
    header = _defines((CSRC / "noise.h").read_text(), "GK_PHILOX_")
    assert header == {"M0": _rng.PHILOX_M0, "M1": _rng.PHILOX_M1, "W0": _rng.PHILOX_W0,
                      "W1": _rng.PHILOX_W1}


def test_sampler_status_codes_match_sampler_c():
    codes = _enum((CSRC / "sampler.c").read_text(), "GK_SAMPLE_")
    python = {name.lower(): getattr(sampler_reference, name)
              for name in ("OK", "BAD_LOGIT", "NO_TOKEN", "OVERFLOW", "TOO_FEW", "NO_MEMORY")}
    assert codes == python
