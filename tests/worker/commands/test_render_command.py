"""`unclip render`: PNG files for text, variations and edits; clear errors for bad options."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from shared.cli import main

FAST = ["--steps", "2,2,2", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_image(path: Path, seed: int = 0) -> Path:
    array = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    PIL.Image.fromarray(array, mode="RGB").save(path)
    return path


def test_writes_numbered_pngs(tiny_family_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "cube.png"
    args = ["render", "a red cube", "--family", str(tiny_family_dir), "-n", "2", "--seed", "5"]
    assert main([*args, *FAST, "--reproducible", "-o", str(out)]) == 0
    first, second = tmp_path / "out" / "cube-0.png", tmp_path / "out" / "cube-1.png"
    for path in (first, second):
        with PIL.Image.open(path) as image:
            assert image.format == "PNG" and image.size == (64, 64)
    assert not out.exists()
    # Reproducible mode: the same seed writes the same bytes alone as in a batch of two.
    again = tmp_path / "again.png"
    args_one = ["render", "a red cube", "--family", str(tiny_family_dir), "--seed", "5"]
    assert main([*args_one, *FAST, "--reproducible", "-o", str(again)]) == 0
    assert again.read_bytes() == first.read_bytes()
    # Full speed (the default): the same command twice still writes the same bytes.
    fast_a, fast_b = tmp_path / "fast-a.png", tmp_path / "fast-b.png"
    assert main([*args, *FAST, "-o", str(fast_a)]) == 0
    assert main([*args, *FAST, "-o", str(fast_b)]) == 0
    for name in ("fast-a-0.png", "fast-a-1.png"):
        twin = tmp_path / name.replace("fast-a", "fast-b")
        assert (tmp_path / name).read_bytes() == twin.read_bytes()


def test_variation_and_edit(tiny_family_dir: Path, tmp_path: Path) -> None:
    image = _write_image(tmp_path / "in.png")
    mask = PIL.Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # left half: repaint
    mask.save(tmp_path / "mask.png")
    family = ["--family", str(tiny_family_dir), *FAST]
    assert main(["render", "", "--image", str(image), *family, "-o", str(tmp_path / "v.png")]) == 0
    edit = ["render", "a hat", "--image", str(image), "--mask", str(tmp_path / "mask.png")]
    assert main([*edit, *family, "-o", str(tmp_path / "e.png")]) == 0
    edited = np.asarray(PIL.Image.open(tmp_path / "e.png"))
    given = np.asarray(PIL.Image.open(image))
    assert np.array_equal(edited[:, 32:], given[:, 32:])


def test_reference_family_when_none_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no models/shapes here
    assert main(["render", "a cube", *FAST, "-o", "ref.png"]) == 0
    assert (tmp_path / "ref.png").is_file()
    assert "reference family" in capsys.readouterr().err


def test_bad_options_give_clear_errors(
    tiny_family_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["-o", str(tmp_path / "x.png")]
    with pytest.raises(SystemExit) as exc:
        main(["render", "a", "--steps", "10,10", *out])
    assert exc.value.code == 2
    assert "PRIOR,DECODER,UPSAMPLER" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["render", "a", "--sampler", "euler", *out])
    assert "invalid choice: 'euler'" in capsys.readouterr().err
    assert main(["render", "a", "--family", str(tmp_path / "none"), *out]) == 2
    assert "model family directory not found" in capsys.readouterr().err
    assert main(["render", "a", "--mask", str(tmp_path / "m.png"), *out]) == 2
    assert "--mask needs --image" in capsys.readouterr().err
    missing = ["--image", str(tmp_path / "nope.png"), "--family", str(tiny_family_dir)]
    assert main(["render", "a", *missing, *out]) == 2
    assert "nope.png" in capsys.readouterr().err


def test_unclip_reproducible_is_the_default_mode(
    tiny_family_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UNCLIP_REPRODUCIBLE=true without the flag gives the flag's bytes."""
    from shared.settings import get_settings

    args = ["render", "a red cube", "--family", str(tiny_family_dir), "-n", "2", "--seed", "5",
            *FAST]  # fmt: skip
    assert main([*args, "--reproducible", "-o", str(tmp_path / "flag.png")]) == 0
    monkeypatch.setenv("UNCLIP_REPRODUCIBLE", "true")
    get_settings.cache_clear()
    try:
        assert main([*args, "-o", str(tmp_path / "env.png")]) == 0
    finally:
        get_settings.cache_clear()
    for i in (0, 1):
        assert (tmp_path / f"env-{i}.png").read_bytes() == (
            tmp_path / f"flag-{i}.png"
        ).read_bytes()


def test_a_truncated_weights_file_or_a_missing_gpu_is_one_line(
    tiny_family_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_family_dir, broken)
    weights = sorted(broken.glob("*.safetensors"))[0]
    weights.write_bytes(weights.read_bytes()[:100])
    out = ["-o", str(tmp_path / "x.png"), "--steps", "2,2,2"]
    assert main(["render", "a", "--family", str(broken), "--device", "cpu", *out]) == 2
    assert "cannot be read" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["render", "a", "--family", str(tiny_family_dir), "--device", "cuda",
                     *out]) == 2  # fmt: skip
        assert "no CUDA device" in capsys.readouterr().err
