"""``gumbelkit bench --reference``: the pure-PyTorch path's rows."""

import pytest

from gumbelkit import _rng
from gumbelkit.cli import main
from gumbelkit.kernels import _lib


def test_bench_reference_times_the_pytorch_path(monkeypatch, capsys):
    before = _lib.library()
    fills = []
    fill = _rng._fill

    def counting_fill(*args, **kwargs):
        fills.append(_lib.library())
        return fill(*args, **kwargs)

    monkeypatch.setattr(_rng, "_fill", counting_fill)
    assert main(["bench", "--reference", "--shapes", "32x64", "4x300", "--repeats", "1",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "pytorch reference path" in out and "gk/torch" in out
    rows = [line.split() for line in out.splitlines()[3:]]
    assert [(r[0], " ".join(r[1:-8])) for r in rows] == [
        ("32x64", "soft"), ("32x64", "hard fwd+bwd"), ("4x300", "soft"),
        ("4x300", "hard fwd+bwd"), ("4x300", "gumbel_max")]
    assert fills and all(lib is None for lib in fills)  # the noise came from _rng
    assert _lib.library() is before  # the kernels are back after the run


@pytest.mark.skipif(_lib.library() is None, reason="the C kernels are not built")
def test_kernels_are_restored_after_an_error():
    with pytest.raises(RuntimeError), _lib.disabled():
        assert _lib.library() is None
        raise RuntimeError
    assert _lib.library() is not None
