"""A small stand-in for a released HumanAesExpert checkpoint, written into a directory for tests.

It has the parts of the real release that our loading path touches, so the test exercises the same code as a
real checkpoint would: config.json whose ``auto_map`` points at its own configuration and modeling files (loaded
with ``trust_remote_code``), a modeling file that imports einops and timm at its top like the InternVL2 remote
code, a ``PreTrainedModel`` with the public methods of the reference README (``score``, ``run_metavoter``,
``expert_score`` -> (12 scores, text), ``expert_annotataion``), weights in model.safetensors, and a slow Qwen2
tokenizer (vocab.json + merges.txt, the 1B's tokenizer class) with InternVL's image tokens, loadable with
``AutoTokenizer(trust_remote_code=True, use_fast=False)`` from local files.

Its outputs are deterministic functions of the pixel values: the per-channel mean over every tile and the tile
count, through one Linear layer and a sigmoid. :func:`standin_outputs` computes the same numbers from the weights
file alone (torch + safetensors, no transformers), so a test can check what the platform stored.

This lives in tests/, not in model_core: it is a fake model, and the product must never ship or load one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model_core.standard import DIMENSIONS

N_OUTPUTS = 14  # 12 expert scores, the MetaVoter, the one-pass score
FEATURES = 4  # 3 channel means + the tile count / 13
MODELING_FILE = "modeling_humanaesexpert_standin.py"
CONFIG_FILE = "configuration_humanaesexpert_standin.py"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>")

_CONFIGURATION = '''
from transformers import PretrainedConfig


class HumanAesExpertStandInConfig(PretrainedConfig):
    model_type = "humanaesexpert_standin"

    def __init__(self, n_features=4, n_outputs=14, force_image_size=448, dimension_names=(), **kwargs):
        super().__init__(**kwargs)
        self.n_features = n_features
        self.n_outputs = n_outputs
        self.force_image_size = force_image_size
        self.dimension_names = list(dimension_names)
'''

_MODELING = '''
import torch
from einops import reduce
from timm.layers import DropPath  # noqa: F401 - imported at the top like the InternViT code of the release
from torch import nn
from transformers import PreTrainedModel

from .configuration_humanaesexpert_standin import HumanAesExpertStandInConfig

LEVELS = ("bad", "poor", "fair", "good", "excellent")


def _level(value):
    return LEVELS[min(4, int(value * 5))]


class HumanAesExpertStandInModel(PreTrainedModel):
    config_class = HumanAesExpertStandInConfig
    main_input_name = "pixel_values"

    def __init__(self, config, use_flash_attn=False):
        super().__init__(config)
        self.head = nn.Linear(config.n_features, config.n_outputs)
        self.post_init()

    def _init_weights(self, module):
        pass

    def _check_prompt(self, tokenizer, question):
        ids = tokenizer("<img><IMG_CONTEXT></img>\\n" + question.replace("<image>\\n", "")).input_ids
        if tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>") not in ids:
            raise ValueError("the tokenizer does not know the image context token")

    def _outputs(self, pixel_values):
        tiles = pixel_values.shape[0]
        means = reduce(pixel_values.float(), "t c h w -> c", "mean")
        features = torch.cat([means, means.new_tensor([tiles / 13.0])])
        return torch.sigmoid(self.head(features.to(self.head.weight.dtype)).float())

    @torch.no_grad()
    def score(self, tokenizer, pixel_values, question):
        self._check_prompt(tokenizer, question)
        return float(self._outputs(pixel_values)[13])

    @torch.no_grad()
    def run_metavoter(self, tokenizer, pixel_values):
        self._check_prompt(tokenizer, "Rate the aesthetics of this human picture.")
        return float(self._outputs(pixel_values)[12])

    @torch.no_grad()
    def expert_score(self, tokenizer, pixel_values):
        self._check_prompt(tokenizer, "Rate the aesthetics of this human picture from 12 different dimensions.")
        scores = self._outputs(pixel_values)[:12]
        text = "\\n".join(f"{i + 1}. {name} : {_level(float(v))}"
                         for i, (name, v) in enumerate(zip(self.config.dimension_names, scores)))
        return scores, text

    def expert_annotataion(self, tokenizer, pixel_values, generation_config):
        return self.expert_score(tokenizer, pixel_values)[1]
'''


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE (GPT-2 style), in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def write_standin_checkpoint(directory: str | Path, *, seed: int = 0, sentencepiece: bool = False) -> Path:
    """Write the stand-in checkpoint into ``directory`` (created) and return it.

    ``sentencepiece=True`` adds a ``tokenizer.model`` file, as the 8B's sentencepiece tokenizer has (its
    presence is what makes the runtime check ask for the sentencepiece package)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    (root / CONFIG_FILE).write_text(_CONFIGURATION.lstrip())
    (root / MODELING_FILE).write_text(_MODELING.lstrip())
    config = {
        "architectures": ["HumanAesExpertStandInModel"],
        "model_type": "humanaesexpert_standin",
        "auto_map": {"AutoConfig": f"{CONFIG_FILE[:-3]}.HumanAesExpertStandInConfig",
                     "AutoModel": f"{MODELING_FILE[:-3]}.HumanAesExpertStandInModel"},
        "n_features": FEATURES, "n_outputs": N_OUTPUTS, "force_image_size": 448,
        "dimension_names": [d.name for d in DIMENSIONS], "torch_dtype": "float32",
        "transformers_version": "4.44.2",
    }
    (root / "config.json").write_text(json.dumps(config, indent=2))
    generator = torch.Generator().manual_seed(seed)
    weights = {"head.weight": torch.randn(N_OUTPUTS, FEATURES, generator=generator) * 2.0,
               "head.bias": torch.randn(N_OUTPUTS, generator=generator) * 0.5}
    save_file(weights, str(root / "model.safetensors"), metadata={"format": "pt"})

    alphabet = _byte_alphabet()
    (root / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(alphabet)}, ensure_ascii=False))
    (root / "merges.txt").write_text("#version: 0.2\n")
    added = {str(len(alphabet) + i): {"content": t, "lstrip": False, "rstrip": False, "normalized": False,
                                      "single_word": False, "special": True} for i, t in enumerate(SPECIAL_TOKENS)}
    (root / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": added,
        "additional_special_tokens": list(SPECIAL_TOKENS[1:]), "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "unk_token": None, "bos_token": None, "model_max_length": 4096,
        "clean_up_tokenization_spaces": False, "errors": "replace", "split_special_tokens": False,
    }, indent=2))
    if sentencepiece:
        (root / "tokenizer.model").write_bytes(b"")
    return root


def standin_outputs(directory: str | Path, pixel_values: torch.Tensor) -> dict:
    """What the stand-in answers for these pixel values (T, 3, H, W), computed without transformers:
    ``expert`` (12 floats), ``metavoter`` and ``score``."""
    weights = load_file(str(Path(directory) / "model.safetensors"))
    means = pixel_values.float().mean(dim=(0, 2, 3))  # (3,)
    features = torch.cat([means, means.new_tensor([pixel_values.shape[0] / 13.0])])  # (4,)
    out = torch.sigmoid(weights["head.weight"] @ features + weights["head.bias"])  # (14,)
    return {"expert": [float(v) for v in out[:12]], "metavoter": float(out[12]), "score": float(out[13])}
