"""ClipEncoder: open_clip configs registered at run time, text and image encodings, weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import PIL.Image
import pytest
import torch
from safetensors.torch import save_file

from worker.unclip.clip_encoder import ClipEncoder, register_open_clip_config
from worker.unclip.configs import ClipConfig
from worker.unclip.reference_family import reference_open_clip_config


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(name: str = "test-clip-tiny") -> ClipConfig:
    return ClipConfig(
        name=name,
        embed_dim=32,
        text_width=32,
        context_length=77,
        image_size=32,
        open_clip_config=reference_open_clip_config(),
    )


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ClipEncoder.build(_config())


def test_encode_text_shapes_mask_and_pooled(encoder: ClipEncoder) -> None:
    enc = encoder.encode_text(["a red cube", ""])
    assert enc.pooled.shape == (2, 32) and enc.pooled.dtype == torch.float32
    assert enc.tokens.shape == (2, 77, 32)
    assert enc.mask.dtype == torch.bool
    # "a red cube" is SOT + 3 words + EOT; the empty prompt is SOT + EOT.
    assert enc.mask.sum(dim=1).tolist() == [5, 2]
    assert enc.mask[0, :5].all() and not enc.mask[0, 5:].any()
    tokens, _ = encoder.tokenize(["a red cube", ""])
    assert torch.allclose(enc.pooled, encoder.model.encode_text(tokens), atol=1e-6)
    assert not torch.allclose(enc.pooled[0], enc.pooled[1])


def test_pooled_is_not_normalised(encoder: ClipEncoder) -> None:
    pooled = encoder.encode_text(["a blue ball"]).pooled
    assert not torch.allclose(pooled.norm(dim=-1), torch.ones(1), atol=1e-3)


def test_encode_image_uses_the_configs_preprocessing(encoder: ClipEncoder) -> None:
    image = PIL.Image.new("RGB", (50, 40), (200, 30, 10))
    emb = encoder.encode_image([image, image.convert("RGBA")])
    assert emb.shape == (2, 32)
    pixels = encoder.preprocess(image)[None]
    assert pixels.shape == (1, 3, 32, 32)
    assert torch.allclose(emb[0], encoder.model.encode_image(pixels)[0], atol=1e-6)
    assert torch.equal(emb[0], emb[1])


def test_weights_load_from_a_local_file(encoder: ClipEncoder, tmp_path: Path) -> None:
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.model.state_dict().items()}, str(path))
    loaded = ClipEncoder.build(_config(), weights=path)
    prompts = ["two green triangles"]
    assert torch.equal(loaded.encode_text(prompts).pooled, encoder.encode_text(prompts).pooled)


def test_builtin_architecture_by_name() -> None:
    config = ClipConfig(name="RN50", embed_dim=1024, text_width=512)
    encoder = ClipEncoder.build(config, dtype=torch.bfloat16)
    assert encoder.dtype == torch.bfloat16
    assert encoder.encode_text(["x"]).pooled.shape == (1, 1024)


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown open_clip architecture 'no-such-net'"):
        ClipEncoder.build(ClipConfig(name="no-such-net", embed_dim=8, text_width=8))
    with pytest.raises(ValueError, match="built-in architecture"):
        register_open_clip_config("ViT-B-32", reference_open_clip_config())
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        ClipEncoder.build(_config(), weights=tmp_path / "missing.safetensors")
