"""Network sizes of the shipped tiny shapes family: small enough to train on a 2-core CPU."""

from __future__ import annotations

from worker.unclip.configs import (
    ClipConfig,
    DecoderConfig,
    DiffusionConfig,
    PriorConfig,
    UpsamplerConfig,
)
from worker.unclip.family import FamilyDefaults
from worker.unclip.render_spec import StageSteps

CLIP_NAME = "shapes-clip-tiny"
EMBED_DIM = 128  # CLIP joint embedding: what the prior generates and the decoder reads
TEXT_WIDTH = 128  # CLIP text tower width: the token sequence the prior and decoder attend to
CONTEXT_LENGTH = 32  # shapes captions use at most ~20 tokens
DECODER_SIZE = 32
FINAL_SIZE = 64
CASCADE_SIZE = 256  # the second upsampler's output: the API's default size


def shapes_family_defaults() -> FamilyDefaults:
    """Sampling defaults written into an exported shapes family's family.json.

    Tuned with bench/shapes_tune_defaults.py on prompts ShapeEval does not score (round 3,
    docs/benchmarks.md): with the v decoder, guidance 5 beat 8 on shape at equal colour, and
    best-of-4 prior samples beat best-of-2.
    """
    return FamilyDefaults(steps=StageSteps(10, 10, 4), sampler="ddim", prior_guidance=4.0,
                          decoder_guidance=5.0, prior_candidates=4,
                          # Written out, equal to the built-in choice: every stage predicts
                          # x0 or v, so DDIM and DPM-Solver++ can start at T - 1 (issue 11).
                          spacing={"ddpm": "linspace", "ddim": "trailing", "dpmpp_2m": "trailing"},
                          solver_start={"prior": 999, "decoder": 999, "upsampler": 999})


def shapes_clip_config() -> ClipConfig:
    """open_clip's ModifiedResNet (CLIP's RN50 design: conv stem, one bottleneck per stage,
    attention pooling) at width 24 on 64 px, and a 4-layer text tower; 49408-token vocab.

    Convolutions rather than a ViT: on this CPU budget a 4-layer ViT on 8 px patches did not
    learn where an object is (a position probe stayed at chance, 11%, after 120 steps) while
    the ResNet reached 67% on the same probe in 80 steps.
    """
    open_clip_config = {
        "embed_dim": EMBED_DIM,
        "vision_cfg": {
            "image_size": FINAL_SIZE, "layers": [1, 1, 1, 1], "width": 24, "head_width": 32,
        },
        "text_cfg": {
            "context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": TEXT_WIDTH,
            "heads": 4, "layers": 4,
        },
    }
    return ClipConfig(
        name=CLIP_NAME, embed_dim=EMBED_DIM, text_width=TEXT_WIDTH,
        context_length=CONTEXT_LENGTH, image_size=FINAL_SIZE, open_clip_config=open_clip_config,
    )


def shapes_prior_config() -> PriorConfig:
    """A 4-layer causal transformer; x0 prediction on a 1000-step cosine schedule."""
    return PriorConfig(
        clip_dim=EMBED_DIM, text_width=TEXT_WIDTH, text_ctx=CONTEXT_LENGTH,
        width=256, layers=4, heads=4, text_drop=0.1,
        diffusion=DiffusionConfig(
            schedule="cosine", timesteps=1000, prediction="x0", variance="fixed_small",
            clamp_x0=10.0,
        ),
    )


def shapes_decoder_config(attention_resolutions: tuple[int, ...] = (8,)) -> DecoderConfig:
    """A 3.4M-parameter 32 px inpainting UNet (7 input channels), attention at 8x8 only,
    learned-range variance (hybrid loss): sized for ~1 CPU core-hour of training.

    v-prediction (round 3; rounds 1-2 predicted eps): a few-step sampler's first step is at
    t = 999, where alpha_bar is ~2e-9. An eps net's x0 estimate there is amplified error,
    clamped to +-1 speckle; the next steps, trained on x_t that carry the true image's mean,
    keep that mean, so flat backgrounds came out as off-palette greys and purples and the
    speckle left stray blobs. A v net's x0 there is its own estimate from the conditioning
    (Salimans & Ho 2022; Lin et al. 2023 on terminal SNR).

    attention_resolutions (pixels): (16, 8) adds self- and cross-attention at 16 x 16 (issue
    12: the shipped decoder's only spatially selective conditioning is at 8 x 8); its weights
    then differ in shape, so a decoder trained with it starts fresh or from a like one.
    """
    return DecoderConfig(
        image_size=DECODER_SIZE, in_channels=7, model_channels=32, channel_mult=(1, 2, 4),
        num_res_blocks=1, attention_resolutions=attention_resolutions, num_heads=-1,
        num_head_channels=32,
        use_scale_shift_norm=True, resblock_updown=True, dropout=0.0,
        clip_dim=EMBED_DIM, text_width=TEXT_WIDTH, text_ctx=CONTEXT_LENGTH, xf_width=128,
        clip_emb_mult=4, clip_emb_drop=0.1, text_drop=0.5,
        diffusion=DiffusionConfig(
            schedule="cosine", timesteps=1000, prediction="v", variance="learned_range",
        ),
    )


def shapes_upsampler_config() -> UpsamplerConfig:
    """A 32 -> 64 px attention-free UNet, one network for every step, predicting x0.

    x0 rather than eps: with the cosine schedule the first of a few trailing steps is at
    t = 999, where alpha_bar is ~2e-9 and an eps net's x0 estimate is pure amplified error;
    an eps upsampler then keeps that garbage (measured: 7 dB PSNR at 4 DDIM steps, while its
    one-step x0 estimate at t = 750 was 21 dB). An x0 net returns the image at once.
    """
    return UpsamplerConfig(
        image_size=FINAL_SIZE, low_res_size=DECODER_SIZE, model_channels=32,
        channel_mult=(1, 2, 2), num_res_blocks=1, dropout=0.0, use_scale_shift_norm=True,
        resblock_updown=True, last_step_model=False,
        diffusion=DiffusionConfig(schedule="cosine", timesteps=1000, prediction="x0"),
    )


def shapes_upsampler256_config() -> UpsamplerConfig:
    """A 64 -> 256 px attention-free UNet predicting x0, trained on 64 px crops.

    Same design as the first upsampler (x0, one network for every step, for the same reason),
    but space-to-depth with 4 x 4 blocks (patch_size 4): its trunk runs at 64 x 64, one
    block per low-res pixel, with 64 channels. A plain 32-channel trunk at 256 x 256 took
    2.7 s per step per image on this CPU. Residual on bicubic (x0 = bicubic + net): a first
    run without it was still 4 dB below bicubic after 450 steps; with it the untrained net
    already is bicubic and training only adds the detail.
    """
    return UpsamplerConfig(
        image_size=CASCADE_SIZE, low_res_size=FINAL_SIZE, model_channels=64,
        channel_mult=(1, 2, 2), num_res_blocks=1, dropout=0.0, use_scale_shift_norm=True,
        resblock_updown=True, last_step_model=False, patch_size=4, residual=True,
        diffusion=DiffusionConfig(schedule="cosine", timesteps=1000, prediction="x0"),
    )
