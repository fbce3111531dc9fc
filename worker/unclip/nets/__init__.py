"""The unCLIP networks: prior transformer, decoder UNet and upsampler UNets (Karlo layout)."""

from worker.unclip.nets.decoder_net import DecoderContext, DecoderNet, pad_decoder_input_channels
from worker.unclip.nets.prior_net import PriorNet, denormalise_image_emb, normalise_image_emb
from worker.unclip.nets.upsampler_net import UpsamplerNet, UpsamplerPair, resize_low_res

__all__ = [
    "DecoderContext",
    "DecoderNet",
    "PriorNet",
    "UpsamplerNet",
    "UpsamplerPair",
    "denormalise_image_emb",
    "normalise_image_emb",
    "pad_decoder_input_channels",
    "resize_low_res",
]
