"""CLIP through open_clip: text and image embeddings for guidance, and finding the weights offline.

`load_clip` takes an open_clip model name with a pretrained tag (weights looked up in the local
Hugging Face cache first, so nothing touches the network when `HF_HUB_OFFLINE` is set), a local
checkpoint file, or a folder holding `open_clip_config.json` and the weights. It never falls back
to random weights; `random_clip` is the explicit, labelled way to get those.
"""
from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from guided.accel import autocast_for
from guided.constants import CLIP_MEAN, CLIP_STD, DEFAULT_CLIP_HUB_REPO, DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from guided.errors import GuidedError, WeightsNotFoundError, one_line
from guided.models.attention import pack_attention_inputs
from guided.models.checkpoints import offline

# DEFAULT_CLIP_HUB_REPO is where open_clip fetches the default tag (its pretrained table; a test
# keeps them in step), so checking for the default weights (`guided models`) needs no open_clip.
# CLIP_MEAN/CLIP_STD: open_clip's defaults, used when a model carries no preprocess config.
# open_clip's file names on the Hub: safetensors first (no pickle), then the pickled fallback.
_HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_FOLDER_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors",
                        "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth", "pytorch_model.bin")


class ClipGuide(nn.Module):
    """An open_clip model and its tokenizer, giving unit-norm float32 embeddings for guidance.

    Text longer than the context (77 tokens for CLIP) is truncated as open_clip does; each call of
    `encode_text` warns about it and records it in `last_truncation`, a list of
    `{"prompt", "tokens", "context_length"}` dicts (empty when nothing was cut).
    """

    def __init__(self, model: nn.Module, tokenizer, info: dict | None = None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        pack_attention_inputs(self.model)  # CPU bf16 autocast: ViT-B-32 pass 3.6 s -> 0.28 s (guided.models.attention)
        self.tokenizer = tokenizer
        self.info = dict(info or {})
        self.last_truncation: list[dict] = []
        size = getattr(model.visual, "image_size", 224)
        self.input_size: tuple[int, int] = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        pre = _preprocess_cfg(model)
        self.register_buffer("mean", torch.tensor(pre.get("mean", CLIP_MEAN)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre.get("std", CLIP_STD)).view(1, 3, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        info = self.info
        return f"name={info.get('name')!r}, pretrained={info.get('pretrained')!r}, random={info.get('random')}"

    @property
    def context_length(self) -> int:
        return int(getattr(self.tokenizer, "context_length", None) or getattr(self.model, "context_length", 77))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _count_tokens(self, prompt: str) -> int | None:
        encode = getattr(self.tokenizer, "encode", None)
        if encode is None or not hasattr(self.tokenizer, "sot_token_id"):
            return None  # a tokenizer without open_clip's BPE interface: truncation not detectable
        return len(encode(prompt)) + 2  # + start and end tokens

    def encode_text(self, prompts: list[str] | str) -> Tensor:
        """(N, D) unit-norm float32 embeddings; over-long prompts are truncated with a warning."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        self.last_truncation = []
        for prompt in prompts:
            count = self._count_tokens(prompt)
            if count is not None and count > self.context_length:
                self.last_truncation.append({"prompt": prompt, "tokens": count, "context_length": self.context_length})
                shown = prompt if len(prompt) <= 80 else prompt[:77] + "..."
                warnings.warn(f"prompt {shown!r} has {count} tokens; CLIP keeps the first {self.context_length} "
                              "(the rest is ignored)", UserWarning, stacklevel=2)
        tokens = self.tokenizer(prompts).to(self.mean.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def encode_image(self, image01: Tensor, *, cutouts: int = 0, augment: bool = False,
                     generator: torch.Generator | None = None, mixed_precision: str = "no") -> Tensor:
        """Unit-norm float32 embeddings of RGB images in [0, 1] of any size, differentiable.

        `cutouts=0`: each whole image, resized (not cropped, so every pixel gets a gradient) to the
        model's input size -> (B, D). `cutouts=n`: n random square crops per image, side 1/2 to 1
        of the short side, shared by the batch -> (B*n, D), image-major (row b*n + j is crop j of
        image b). `augment` flips half of the crops and adds light noise. Random draws use
        `generator` (a CPU generator), so guided runs are reproducible. `mixed_precision` ('no',
        'bf16', 'fp16', resolved): autocast of the vision tower only; crops, normalisation and the
        embeddings stay float32.
        """
        if image01.ndim != 4 or image01.shape[1] != 3:
            raise GuidedError(f"`image01` must be (B, 3, H, W), got shape {tuple(image01.shape)}")
        if cutouts < 0:
            raise GuidedError(f"`cutouts` must be >= 0, got {cutouts}")
        x = image01.float()
        views = make_cutouts(x, cutouts, self.input_size, augment=augment, generator=generator) if cutouts else \
            _resize(x, self.input_size)
        views = (views - self.mean) / self.std
        with autocast_for(self.model, mixed_precision, views.device):
            embeds = self.model.encode_image(views.to(self.dtype))
        return F.normalize(embeds.float(), dim=-1)

    def style_target(self, images01: list[Tensor], weights: list[float]) -> Tensor:
        """The CLIP style target of one or more paintings: the unit-norm weighted mean of their
        whole-image embeddings, (1, D). Guidance pulls toward it; the compare metric scores by it."""
        embeds = torch.cat([self.encode_image(image) for image in images01])
        w = torch.tensor(weights, dtype=embeds.dtype, device=embeds.device).view(-1, 1)
        return F.normalize((w * embeds).sum(0, keepdim=True), dim=-1)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _uniform(generator: torch.Generator | None, *shape: int) -> Tensor:
    return torch.rand(*shape, generator=generator)


def make_cutouts(image: Tensor, n: int, size: tuple[int, int], *, augment: bool = False,
                 generator: torch.Generator | None = None) -> Tensor:
    """(B*n, C, *size) random square crops of `image` (Crowson's CLIP-guided diffusion cutouts)."""
    b, c, h, w = image.shape
    side = min(h, w)
    low = max(1, side // 2)
    draws = _uniform(generator, n, 4)
    crops = []
    for j in range(n):
        s = int(low + draws[j, 0].item() * (side - low))
        top = int(draws[j, 1].item() * (h - s + 1))
        left = int(draws[j, 2].item() * (w - s + 1))
        crop = _resize(image[:, :, top:top + s, left:left + s], size)
        if augment and draws[j, 3].item() < 0.5:
            crop = crop.flip(-1)
        crops.append(crop)
    out = torch.stack(crops, dim=1).reshape(b * n, c, *size)
    if augment:
        noise = torch.randn(out.shape, generator=generator).to(out.device, out.dtype)
        out = out + 0.02 * noise  # a little noise: gradients that survive it are less adversarial
    return out


def _preprocess_cfg(model: nn.Module) -> dict:
    try:
        from open_clip import get_model_preprocess_cfg

        return dict(get_model_preprocess_cfg(model))
    except Exception:  # a model that open_clip did not build
        return {}


def _hub_repo_of_tag(name: str, tag: str) -> tuple[str | None, list[str], str | None]:
    """(hub repo id, candidate file names, url) where open_clip would fetch `name`/`tag`."""
    if (name, tag) == (DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED):
        return DEFAULT_CLIP_HUB_REPO, list(_HUB_WEIGHT_FILES), None
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, tag)
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)  # "org/name/" -> ("org/name", ""): default file names
        if filename:
            stem, ext = os.path.splitext(filename)
            files = [stem + ".safetensors", filename] if ext in (".bin", ".pth") else [filename]
        else:
            files = list(_HUB_WEIGHT_FILES)
        return repo, files, None
    return None, [], cfg.get("url") or None


def cached_clip_weights(name: str, pretrained: str) -> tuple[Path | None, list[str]]:
    """The local file open_clip would load for `name`/`pretrained`, and every place looked at.

    Looks only in local caches (the Hugging Face hub cache, open_clip's ~/.cache/clip for URL
    tags): no network.
    """
    repo, files, url = _hub_repo_of_tag(name, pretrained)
    looked: list[str] = []
    if repo:
        from huggingface_hub import constants, try_to_load_from_cache

        looked.append(f"Hugging Face cache {constants.HF_HUB_CACHE} ({repo}: {' or '.join(files)})")
        for filename in files:
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found), looked
    if url:
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        looked.append(str(path))
        if path.is_file():
            return path, looked
    return None, looked


def clip_how_to_get(name: str, pretrained: str) -> str:
    return (f"On a machine with internet run `python -c \"import open_clip; open_clip.create_model_and_transforms("
            f"'{name}', pretrained='{pretrained}')\"` and copy the Hugging Face cache (~/.cache/huggingface/hub) "
            f"here, or pass a local checkpoint with --clip PATH (a weights file or a folder with "
            f"open_clip_config.json and the weights).")


def _check_tag(name: str, pretrained: str) -> None:
    import open_clip

    if name not in open_clip.list_models():
        models = open_clip.list_models()
        raise GuidedError(f"CLIP model {name!r} is not an open_clip architecture nor an existing path; "
                          f"known e.g.: {', '.join(models[:12])} ... ({len(models)} in all)")
    if not open_clip.get_pretrained_cfg(name, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise GuidedError(f"`pretrained` {pretrained!r} is not a known open_clip tag for {name} nor an existing "
                          f"file; tags for {name}: {', '.join(tags) or 'none'}")


def _from_tag(name: str, pretrained: str, device) -> ClipGuide:
    import open_clip

    _check_tag(name, pretrained)
    path, looked = cached_clip_weights(name, pretrained)
    if path is None and offline():
        raise WeightsNotFoundError(
            f"CLIP weights {name}/{pretrained} are not on this machine (looked in: {'; '.join(looked)}); "
            f"downloads are off (HF_HUB_OFFLINE/GUIDED_OFFLINE). {clip_how_to_get(name, pretrained)}")
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    pre = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    try:
        model = open_clip.create_model(name, pretrained=str(path) if path else pretrained, device=device,
                                       force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                                       force_preprocess_cfg=pre, weights_only=True)
    except Exception as exc:
        raise WeightsNotFoundError(f"CLIP weights {name}/{pretrained} could not be loaded ({type(exc).__name__}: "
                                   f"{one_line(exc)}). {clip_how_to_get(name, pretrained)}") from None
    info = {"name": name, "pretrained": pretrained, "source": str(path) if path else "downloaded", "random": False}
    return ClipGuide(model, open_clip.get_tokenizer(name), info)


def _weights_in_folder(folder: Path) -> Path:
    for filename in _FOLDER_WEIGHT_FILES:
        if (folder / filename).is_file():
            return folder / filename
    found = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) + sorted(folder.glob("*.pth"))
    if not found:
        raise WeightsNotFoundError(f"CLIP folder '{folder}' has no weights file (expected one of "
                                   f"{', '.join(_FOLDER_WEIGHT_FILES)})")
    return found[0]


def _from_folder(folder: Path, device) -> ClipGuide:

    config_path = folder / "open_clip_config.json"
    if not config_path.is_file():
        raise WeightsNotFoundError(f"CLIP folder '{folder}' has no open_clip_config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GuidedError(f"CLIP config '{config_path}' cannot be read: {exc}") from None
    model_cfg = config.get("model_cfg", config)
    weights = _weights_in_folder(folder)
    model = build_clip_model(model_cfg)
    _load_weights(model, weights)
    model.to(device or "cpu")
    _set_preprocess(model, config.get("preprocess_cfg", {}))
    info = {"name": config.get("name", folder.name), "pretrained": str(weights), "source": str(weights),
            "random": False}
    return ClipGuide(model, _tokenizer_for(model_cfg), info)


def _load_weights(model: nn.Module, path: Path) -> None:
    import open_clip

    if path.suffix not in (".safetensors", ".bin", ".pth", ".pt"):
        raise GuidedError(f"CLIP weights file '{path}' has suffix '{path.suffix}'; expected .safetensors, .bin or .pth")
    try:  # open_clip's loader converts old layouts; torch.load only with weights_only=True
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except pickle.UnpicklingError:  # a pickle holding more than tensors: never run, never advised to
        raise GuidedError(f"CLIP weights file '{path}' is a pickle file that holds more than tensors: refused, "
                          "it could run code; use a .safetensors file") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GuidedError(f"CLIP weights file '{path}' does not fit the model: {first}") from None


def _from_file(name: str, path: Path, device) -> ClipGuide:
    import open_clip

    if name not in open_clip.list_models():
        raise GuidedError(f"CLIP weights file '{path}' needs a known open_clip architecture name, got {name!r}")
    model = open_clip.create_model(name, pretrained=None, device="cpu")
    _load_weights(model, path)
    model.to(device or "cpu")
    info = {"name": name, "pretrained": str(path), "source": str(path), "random": False}
    return ClipGuide(model, open_clip.get_tokenizer(name), info)


def load_clip(name: str = DEFAULT_CLIP_MODEL, pretrained: str | None = DEFAULT_CLIP_PRETRAINED, *,
              device: str | torch.device | None = None) -> ClipGuide:
    """A pretrained CLIP for guidance.

    `name`: an open_clip architecture ("ViT-B-32") or a local folder with `open_clip_config.json`
    and weights (then `pretrained` is ignored). `pretrained`: an open_clip tag (looked up in the
    local cache first; downloaded only when online) or a local weights file (.safetensors
    preferred; .bin/.pth read with `weights_only=True`). A file given as `name` is read as
    `DEFAULT_CLIP_MODEL` weights. Missing weights raise `WeightsNotFoundError` saying how to get them.
    """
    name_path = Path(str(name)).expanduser()
    if name_path.is_dir():
        return _from_folder(name_path, device)
    if name_path.is_file():
        return _from_file(DEFAULT_CLIP_MODEL, name_path, device)
    if pretrained is None or pretrained == "":
        raise GuidedError(f"`pretrained` is required for CLIP {name!r} (an open_clip tag or a weights file); "
                          "random weights only through guided.models.clip.random_clip")
    file = Path(str(pretrained)).expanduser()
    if file.is_file():
        return _from_file(name, file, device)
    if os.sep in str(pretrained) or str(pretrained).endswith((".safetensors", ".bin", ".pth", ".pt")):
        raise WeightsNotFoundError(f"CLIP weights file '{file}' does not exist")
    return _from_tag(name, str(pretrained), device)


def build_clip_model(model_cfg: dict) -> nn.Module:
    """An open_clip CLIP (or CustomTextCLIP) from an architecture dict, randomly initialised."""
    import open_clip

    cfg = dict(model_cfg)
    custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "hf_model_name" in cfg.get("text_cfg", {}):
        cfg["text_cfg"] = {**cfg["text_cfg"], "hf_model_pretrained": False}
    try:
        return (open_clip.CustomTextCLIP if custom else open_clip.CLIP)(**cfg)
    except TypeError as exc:
        raise GuidedError(f"CLIP architecture config is not an open_clip model config: {exc}") from None


def _tokenizer_for(model_cfg: dict):
    import open_clip

    text_cfg = model_cfg.get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name"):
        return open_clip.tokenizer.HFTokenizer(text_cfg["hf_tokenizer_name"],
                                               context_length=text_cfg.get("context_length", 77))
    return open_clip.SimpleTokenizer(context_length=text_cfg.get("context_length", 77))


def _set_preprocess(model: nn.Module, preprocess: dict) -> None:
    from open_clip import set_model_preprocess_cfg

    size = getattr(model.visual, "image_size", 224)
    base = {"size": size, "mean": CLIP_MEAN, "std": CLIP_STD}
    set_model_preprocess_cfg(model, {**base, **{k: v for k, v in preprocess.items() if k in ("mean", "std")}})


def random_clip(name_or_config: str | dict = DEFAULT_CLIP_MODEL, seed: int = 0) -> ClipGuide:
    """A CLIP with RANDOM weights (seeded), labelled so in `info`: for tests and cost measurements.

    `name_or_config`: an open_clip architecture name, or a model config dict
    (`embed_dim`, `vision_cfg`, `text_cfg`, as in open_clip's JSON files).
    """
    import open_clip

    if isinstance(name_or_config, dict):
        model_cfg, name = name_or_config, str(name_or_config.get("name", "custom"))
        model_cfg = {k: v for k, v in model_cfg.items() if k != "name"}
    else:
        name = str(name_or_config)
        model_cfg = open_clip.get_model_config(name)
        if model_cfg is None:
            raise GuidedError(f"CLIP model {name!r} is not an open_clip architecture")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_clip_model(model_cfg)
    _set_preprocess(model, {})
    info = {"name": name, "pretrained": None, "source": f"random init, seed {seed}", "random": True}
    return ClipGuide(model, _tokenizer_for(model_cfg), info)


def save_clip_folder(guide: ClipGuide, folder: str | Path, model_cfg: dict) -> Path:
    """Write `guide`'s weights (safetensors) and `open_clip_config.json` into `folder`, loadable by `load_clip`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pre = {"mean": guide.mean.flatten().tolist(), "std": guide.std.flatten().tolist()}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": pre}, indent=2))
    state = {k: v.detach().contiguous().cpu() for k, v in guide.model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder
