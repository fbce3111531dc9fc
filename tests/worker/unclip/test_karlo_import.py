"""import_karlo and `unclip import-karlo` on a tiny fake Karlo release built in the test."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import open_clip
import pytest
import torch
import yaml
from torch import nn

from shared.cli import main as unclip_main
from worker.unclip.configs import ClipConfig, DecoderConfig, PriorConfig, UpsamplerConfig
from worker.unclip.family import load_family
from worker.unclip.karlo_import import (
    KarloImportError,
    import_karlo,
    read_checkpoint,
    read_clip_weights,
)
from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair

CLIP = ClipConfig(
    name="karlo-import-test-clip",
    embed_dim=32,
    text_width=32,
    context_length=8,
    image_size=32,
    open_clip_config={
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
        "text_cfg": {
            "context_length": 8,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    },
)
PRIOR = PriorConfig(clip_dim=32, text_width=32, text_ctx=8, width=64, layers=2, heads=1)
DECODER = DecoderConfig(
    image_size=64,
    in_channels=3,
    model_channels=32,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(32,),
    num_head_channels=64,
    clip_dim=32,
    text_width=32,
    text_ctx=8,
    xf_width=32,
    dropout=0.0,
)
UPSAMPLER = UpsamplerConfig(model_channels=32, channel_mult=(1, 1), num_res_blocks=1)


def _randomised(net: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.1 * torch.randn_like(p))
    return net.eval()


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, nn.Module]]:
    """A fake Karlo release: three .ckpt, the stats tuple and an open_clip weight file."""
    src = tmp_path_factory.mktemp("karlo")
    nets = {
        "prior": _randomised(PriorNet(PRIOR), 1),
        "decoder": _randomised(DecoderNet(DECODER), 2),
        "upsampler": _randomised(UpsamplerPair(UPSAMPLER), 3),
    }
    names = {
        "prior": ("prior-ckpt-step=01000000-of-01000000.ckpt", "model."),
        "decoder": ("decoder-ckpt-step=01000000-of-01000000.ckpt", "model."),
        "upsampler": ("improved-sr-ckpt-step=1.2M.ckpt", ""),
    }
    for stage, (name, prefix) in names.items():
        state = {prefix + k: v for k, v in nets[stage].state_dict().items()}
        torch.save({"state_dict": state}, src / name)
    g = torch.Generator().manual_seed(4)
    torch.save(
        (torch.randn(32, generator=g), torch.rand(32, generator=g) + 0.5), src / "ViT-L-14_stats.th"
    )
    open_clip.add_model_config(_clip_json(tmp_path_factory.mktemp("clipcfg")))
    clip = open_clip.create_model(CLIP.name, pretrained=None)
    torch.save(clip.state_dict(), src / "ViT-L-14.pt")
    nets["clip"] = clip
    return src, nets


def _clip_json(folder: Path) -> Path:
    path = folder / f"{CLIP.name}.json"
    path.write_text(json.dumps(CLIP.open_clip_config))
    return path


def _prior_inputs() -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(9)
    mask = torch.arange(8)[None] < torch.tensor([[8], [3]])
    kw = {
        "text_emb": torch.randn(2, 32, generator=g),
        "text_tokens": torch.randn(2, 8, 32, generator=g),
        "text_mask": mask,
    }
    return (torch.randn(2, 32, generator=g), torch.tensor([3, 800])), kw


@torch.no_grad()
def test_import_infers_sizes_and_load_family_gives_same_outputs(
    release: tuple[Path, dict[str, nn.Module]], tmp_path: Path
) -> None:
    src, nets = release
    dest = import_karlo(src, tmp_path / "family", dtype=torch.float32, clip_config=CLIP)
    family = load_family(dest)
    assert json.loads((dest / "family.json").read_text())["defaults"]["steps"] == [25, 25, 7]
    assert family.decoder.cfg.in_channels == 7 and family.prior.cfg.heads == 1
    args, kw = _prior_inputs()
    torch.testing.assert_close(family.prior(*args, **kw), nets["prior"](*args, **kw))
    x = torch.randn(2, 3, 16, 16)
    dec_kw = dict(kw, image_emb=torch.randn(2, 32), keep_image_emb=torch.tensor([True, False]))
    torch.testing.assert_close(
        family.decoder(x, args[1], **dec_kw), nets["decoder"](x, args[1], **dec_kw)
    )
    low = torch.rand(2, 3, 8, 8)
    for last in (False, True):
        torch.testing.assert_close(
            family.upsampler(x, args[1], low_res=low, last=last),
            nets["upsampler"](x, args[1], low_res=low, last=last),
        )
    mean, std = torch.load(src / "ViT-L-14_stats.th")
    torch.testing.assert_close((family.prior_mean, family.prior_std), (mean, std))
    tokens = torch.randint(1, 49407, (1, 8))
    torch.testing.assert_close(
        family.clip.model.encode_text(tokens), nets["clip"].encode_text(tokens)
    )


def _karlo_yaml(folder: Path) -> Path:
    """Karlo-style YAMLs for the tiny release; the decoder's head width (16) is not inferable."""
    hp = {
        "text_ctx": 8,
        "xf_width": 64,
        "xf_layers": 2,
        "xf_heads": 1,
        "xf_final_ln": True,
        "clip_dim": 32,
    }
    dec = {
        "image_size": 16,
        "num_channels": 32,
        "num_res_blocks": 1,
        "channel_mult": "1,2",
        "attention_resolutions": "8",
        "num_head_channels": 16,
        "use_scale_shift_norm": True,
        "dropout": 0.0,
        "clip_dim": 32,
        "clip_emb_mult": 4,
        "text_ctx": 8,
        "xf_width": 32,
        "resblock_updown": True,
        "learn_sigma": True,
        "clip_emb_drop": 0.1,
    }
    sr = {"channels": 32, "depth": 1, "channels_multiple": [1, 1], "dropout": 0.0}
    diffusion = {"steps": 1000, "noise_schedule": "squaredcos_cap_v2", "sigma_small": True}
    docs = {
        "prior": ("prior", hp, {**diffusion, "predict_xstart": True}),
        "decoder": ("t2i-decoder", dec, {**diffusion, "learn_sigma": True}),
        "sr": ("improved_sr_64_256", sr, diffusion),
    }
    for name, (kind, hparams, diff) in docs.items():
        data = {"model": {"type": kind, "hparams": hparams}, "diffusion": diff}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return folder


def test_import_with_karlo_yaml_uses_its_sizes(
    release: tuple[Path, dict[str, nn.Module]], tmp_path: Path
) -> None:
    src, _ = release
    configs = _karlo_yaml(tmp_path)
    parts: list[str] = []
    dest = import_karlo(src, tmp_path / "fam", config_dir=configs, clip_config=CLIP,
                        on_part=parts.append)  # fmt: skip
    assert parts == ["prior", "decoder", "upsampler", "prior_stats", "clip"]  # progress, in order
    decoder = json.loads((dest / "decoder.json").read_text())
    assert decoder["num_head_channels"] == 16 and decoder["image_size"] == 16
    assert decoder["in_channels"] == 7
    family = load_family(dest)
    assert family.decoder.input_blocks[0][0].weight.dtype == torch.float32  # loaded as asked
    assert (dest / "decoder.safetensors").stat().st_size < (
        dest / "prior.json"
    ).stat().st_size * 1e4


def test_config_that_does_not_fit_is_refused(
    release: tuple[Path, dict[str, nn.Module]], tmp_path: Path
) -> None:
    src, _ = release
    configs = _karlo_yaml(tmp_path)
    text = (configs / "prior.yaml").read_text().replace("xf_layers: 2", "xf_layers: 3")
    (configs / "prior.yaml").write_text(text)
    with pytest.raises(KarloImportError, match="prior checkpoint does not fit.*missing"):
        import_karlo(src, tmp_path / "fam", config_dir=configs, clip_config=CLIP)
    assert not (tmp_path / "fam").exists() and not (tmp_path / "fam.partial").exists()


def test_cli_imports_and_reports_errors(
    release: tuple[Path, dict[str, nn.Module]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = release
    clip_json = tmp_path / "clip.json"
    clip_json.write_text(json.dumps(CLIP.to_dict()))
    dest = tmp_path / "fam"
    argv = ["import-karlo", str(src), str(dest), "--dtype", "bf16", "--clip-config", str(clip_json)]
    assert unclip_main(argv) == 0
    assert load_family(dest).prior.dtype == torch.float32
    assert unclip_main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert unclip_main(["import-karlo", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2
    assert unclip_main(["import-karlo", str(tmp_path), str(tmp_path / "y")]) == 1
    assert "expected exactly one prior file" in capsys.readouterr().err


def test_openai_torchscript_clip_file_is_read(tmp_path: Path) -> None:
    class Scripted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(2, 2)
            self.register_buffer("input_resolution", torch.tensor(224))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    module = Scripted()
    torch.jit.script(module).save(str(tmp_path / "ViT-L-14.pt"))
    state = read_clip_weights(tmp_path / "ViT-L-14.pt")
    assert sorted(state) == ["proj.bias", "proj.weight"]  # OpenAI's extra entries dropped
    torch.testing.assert_close(state["proj.weight"], module.proj.weight.detach())


def test_checkpoint_with_python_objects_needs_allow_pickle(tmp_path: Path) -> None:
    path = tmp_path / "prior.ckpt"
    state = {"model.w": torch.ones(2)}
    torch.save({"state_dict": state, "hparams": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(KarloImportError, match="allow-pickle"):
        read_checkpoint(path, "prior")
    assert read_checkpoint(path, "prior", allow_pickle=True).keys() == {"w"}


def test_cli_names_a_truncated_checkpoint(
    release: tuple[Path, dict[str, nn.Module]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    src, _ = release
    cut = tmp_path / "cut"
    shutil.copytree(src, cut)
    [prior] = [p for p in cut.iterdir() if p.name.startswith("prior")]
    prior.write_bytes(prior.read_bytes()[:5000])  # an interrupted download
    clip_json = tmp_path / "clip.json"
    clip_json.write_text(json.dumps(CLIP.to_dict()))
    argv = ["import-karlo", str(cut), str(tmp_path / "fam"), "--clip-config", str(clip_json)]
    assert unclip_main(argv) == 1
    assert "cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "fam").exists()
