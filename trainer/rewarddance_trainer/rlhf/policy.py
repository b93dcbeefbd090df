"""The policy (the generator's UNet with LoRA adapters, or all of it) and the frozen base it is held close to.

With LoRA the base is the same UNet with its adapters switched off, so no second copy is kept; full fine-tuning
keeps a frozen copy. Either way ``eps`` and ``base_eps`` give the (guided) noise prediction at x_t.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch

from ..generator.lora import TARGET_MODULES

# The default UNet has no attention at full resolution (DownBlock2D / UpBlock2D): adapters on the attention
# projections alone cannot touch the layers that draw the final pixels. "all" adds every convolution (ResNet convs,
# shortcuts, down/upsamplers, conv_in/conv_out), matched by module-name suffix as peft does.
CONV_MODULES = ["conv1", "conv2", "conv_shortcut", "conv", "conv_in", "conv_out"]
LORA_TARGETS = {"attention": TARGET_MODULES, "all": TARGET_MODULES + CONV_MODULES}


def _module_of(param_name: str) -> str:
    """ "down_blocks.0.resnets.0.conv1.lora_A.default.weight" -> "down_blocks.0.resnets.0.conv1"."""
    return param_name.split(".lora_")[0]


class Policy:
    def __init__(
        self,
        pipe,
        lora: bool = True,
        rank: int = 8,
        alpha: float = 16.0,
        guidance: float = 1.0,
        targets: str = "attention",
    ):
        self.pipe = pipe
        self.unet = pipe.unet
        self.lora = lora
        self.guidance = guidance
        self.unet.requires_grad_(False)
        if lora:
            from peft import LoraConfig

            cfg = LoraConfig(
                r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=LORA_TARGETS[targets]
            )
            self.unet.add_adapter(cfg)
            self.base_unet = None
        else:
            self.base_unet = copy.deepcopy(self.unet).eval()
            self.unet.requires_grad_(True)
        self.unet.train()
        self.null = pipe.encode([""])

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.unet.parameters() if p.requires_grad]

    def param_groups(self, conv_lr_scale: float = 1.0) -> list[dict]:
        """Optimiser groups: the convolution adapters (``lora_targets="all"``) apart, their rate scaled by
        ``conv_lr_scale`` (the key ``lr_scale`` multiplies the scheduled rate); one group otherwise."""
        conv, rest = [], []
        for k, p in self.unet.named_parameters():
            if p.requires_grad:
                (conv if self.lora and _module_of(k).endswith(tuple(CONV_MODULES)) else rest).append(p)
        return [{"params": rest, "lr_scale": 1.0}] + ([{"params": conv, "lr_scale": conv_lr_scale}] if conv else [])

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.unet.named_parameters() if v.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.unet.named_parameters())
        with torch.no_grad():
            for k, v in state.items():
                params[k].copy_(v)

    def _eps(self, unet, x: torch.Tensor, t, cond: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        states, mask = cond
        if self.guidance <= 1.0:
            return unet(x, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
        n = len(x)
        null_states, null_mask = (v.expand(n, *v.shape[1:]) for v in self.null)
        out = unet(
            torch.cat([x, x]),
            t,
            encoder_hidden_states=torch.cat([null_states, states]),
            encoder_attention_mask=torch.cat([null_mask, mask]),
        ).sample
        uncond, c = out.chunk(2)
        return uncond + self.guidance * (c - uncond)

    def eps(self, x: torch.Tensor, t, cond) -> torch.Tensor:
        return self._eps(self.unet, x, t, cond)

    @torch.no_grad()
    def base_eps(self, x: torch.Tensor, t, cond) -> torch.Tensor:
        if self.base_unet is not None:
            return self._eps(self.base_unet, x, t, cond)
        with self._adapters_off():
            return self._eps(self.unet, x, t, cond)

    @contextmanager
    def _adapters_off(self):
        self.unet.disable_adapters()
        try:
            yield
        finally:
            self.unet.enable_adapters()

    def merged_unet(self):
        """A plain UNet with the adapters folded into its weights (what the tuned pipeline saves)."""
        if not self.lora:
            return copy.deepcopy(self.unet).eval()
        from peft.tuners.lora import LoraLayer

        unet = copy.deepcopy(self.unet)
        for module in unet.modules():
            if isinstance(module, LoraLayer):
                module.merge()
        state = {k: v for k, v in unet.state_dict().items() if "lora_" not in k and "base_layer" not in k}
        state |= {k.replace(".base_layer", ""): v for k, v in unet.state_dict().items() if ".base_layer." in k}
        plain = type(self.unet).from_config(self.unet.config)
        plain.load_state_dict(state)
        return plain.eval()
