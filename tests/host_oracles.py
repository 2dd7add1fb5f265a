"""Each host's textual-inversion loader, re-implemented for the tests from its published source
(the facts in /work/research/hosts.md, cited in docs/hosts.md) and run on real files with real
torch, safetensors and PIL: the oracle embkit.hosts must agree with.

These follow the hosts' code paths step by step (the extension dispatch, the safe loader's zip
member regex and ``find_class`` allow-list executed as an unpickler, ``create_embedding_from_data``'s
branches on the loaded objects, ComfyUI's per-encoder lookup and zip fallback, InvokeAI's base probe
with its ``shape[0]``, SD.Next's skip rule); diffusers is its own oracle: the installed diffusers'
state-dict loader and token retrieval run on each file. Each returns ``(status, trigger)`` with the
statuses of ``embkit.hosts`` (loads, partial, skipped, error, ignored).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

# -- A1111 modules/safe.py --------------------------------------------------------------------------
BEFORE_1_10 = re.compile(r"^([^/]+)/((data/\d+)|version|(data\.pkl))$")
FROM_1_10 = re.compile(r"^([^/]+)/((data/\d+)|version|byteorder|.data/serialization_id|(data\.pkl))$")
DATA_PKL = re.compile(r"^([^/]+)/data\.pkl$")
A1111_ALLOWED = {
    ("collections", "OrderedDict"),
    *(("torch._utils", n) for n in ("_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_device_tensor_from_numpy")),
    *(("torch", n) for n in ("FloatStorage", "HalfStorage", "IntStorage", "LongStorage", "DoubleStorage", "ByteStorage", "float32", "BFloat16Storage")),
    ("torch.nn.modules.container", "ParameterDict"),
    ("numpy.core.multiarray", "scalar"), ("numpy.core.multiarray", "_reconstruct"), ("numpy", "dtype"), ("numpy", "ndarray"),
    ("_codecs", "encode"), ("pytorch_lightning.callbacks", "model_checkpoint"),
    ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"), ("__builtin__", "set"),
}


class _Stub:
    """Stands in for an allowed global (a function or a class: NEWOBJ needs a type), so the check
    runs without torch: what matters is which globals resolve."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass


class _Restricted(pickle.Unpickler):
    """``RestrictedUnpickler``: only the allow-list resolves; storages are placeholders."""

    def persistent_load(self, saved_id):
        assert saved_id[0] == "storage"
        return None

    def find_class(self, module, name):
        if (module, name) in A1111_ALLOWED:
            return type(name, (_Stub,), {})
        raise pickle.UnpicklingError(f"global '{module}/{name}' is forbidden")


def a1111_safe(path: str, members: re.Pattern) -> bool:
    """``check_pt``: member names, one data.pkl, the restricted unpickler (5 pickles if not a zip)."""
    try:
        with zipfile.ZipFile(path) as z:
            if any(not members.match(n) for n in z.namelist()):
                return False
            pkls = [n for n in z.namelist() if DATA_PKL.match(n)]
            if len(pkls) != 1:
                return False
            with z.open(pkls[0]) as fh:
                _Restricted(fh).load()
    except zipfile.BadZipFile:
        try:
            with open(path, "rb") as fh:
                u = _Restricted(fh)
                for _ in range(5):
                    u.load()
        except Exception:  # noqa: BLE001
            return False
    except Exception:  # noqa: BLE001
        return False
    return True


# -- A1111 / Forge textual_inversion.py ------------------------------------------------------------
#: encoder keys of a dict layout: a tensor under one that no encoder of the model takes means the
#: embedding applies only in part (embkit's "partial": an SDXL file's CLIP-G half on SD1)
ENCODER_KEYS = ("clip_l", "clip_h", "clip_g", "t5", "t5xxl")


def _unused(vec, used_keys) -> bool:
    return isinstance(vec, dict) and any(k in ENCODER_KEYS and k not in used_keys for k in vec)



def _card(path: str):
    from PIL import Image

    import torch

    with Image.open(path) as im:
        text = getattr(im, "text", {}).get("sd-ti-embedding")
    if text is None:
        return None

    def dec(obj):
        if isinstance(obj, dict) and "TORCHTENSOR" in obj:
            return torch.tensor(obj["TORCHTENSOR"])
        if isinstance(obj, dict):
            return {k: dec(x) for k, x in obj.items()}
        return obj

    return dec(json.loads(base64.b64decode(text)))


def _create_embedding_from_data(data):
    """→ (vec or dict, width) or raises, as ``create_embedding_from_data``."""
    import torch

    if "string_to_param" in data:
        param_dict = data["string_to_param"]
        param_dict = getattr(param_dict, "_parameters", param_dict)
        assert len(param_dict) == 1, "embedding file has multiple terms in it"
        emb = next(iter(param_dict.items()))[1]
        vec = emb.detach().to(dtype=torch.float32)
        return vec, vec.shape[-1]
    if type(data) == dict and "clip_g" in data and "clip_l" in data:  # noqa: E721
        vec = {k: v.detach().float() for k, v in data.items()}
        return vec, data["clip_g"].shape[-1] + data["clip_l"].shape[-1]
    if type(data) == dict and type(next(iter(data.values()))) == torch.Tensor:  # noqa: E721
        assert len(data.keys()) == 1, "embedding file has multiple terms in it"
        emb = next(iter(data.values()))
        if len(emb.shape) == 1:
            emb = emb.unsqueeze(0)
        return emb, emb.shape[-1]
    raise Exception("Couldn't identify as neither textual inversion embedding nor diffuser concept.")


def _webui_load(path: str, safe: bool):
    """``load_from_file`` up to the data dict: (name, data) or a status string."""
    import safetensors.torch
    import torch

    fn = os.path.basename(path)
    name, ext = os.path.splitext(fn)
    ext = ext.upper()
    if os.path.getsize(path) == 0:
        return "ignored"
    if ext in [".PNG", ".WEBP", ".JXL", ".AVIF"]:
        _, second_ext = os.path.splitext(name)
        if second_ext.upper() == ".PREVIEW":
            return "ignored"
        data = _card(path)
        if data is None:
            return "ignored"
        name = data.get("name", name)
    elif ext in [".BIN", ".PT"]:
        if safe and not a1111_safe(path, FROM_1_10):
            return "error"
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001
            return "error"
    elif ext in [".SAFETENSORS"]:
        try:
            data = safetensors.torch.load_file(path, device="cpu")
        except Exception:  # noqa: BLE001
            return "error"
    else:
        return "ignored"
    return name, data


def _bundles(path: str) -> dict | None:
    """``extensions-builtin/Lora/networks.py`` ``load_network``: the bundled embeddings of a LoRA,
    ``{emb_name: emb_dict}`` (``None`` when the file bundles none)."""
    if not path.endswith(".safetensors"):
        return None
    import safetensors.torch

    sd = safetensors.torch.load_file(path)
    if not any(k.startswith("bundle_emb.") for k in sd):
        return None
    found: dict = {}
    for key, weight in sd.items():
        key_network_without_network_parts, _, network_part = key.partition(".")
        if key_network_without_network_parts == "bundle_emb":
            emb_name, vec_name = network_part.split(".", 1)
            emb_dict = found.get(emb_name, {})
            if vec_name.split(".")[0] == "string_to_param":
                _, k2 = vec_name.split(".", 1)
                emb_dict["string_to_param"] = {k2: weight}
            else:
                emb_dict[vec_name] = weight
            found[emb_name] = emb_dict
    return found


def a1111(path: str, family: str) -> tuple[str, str | None]:
    if os.path.isdir(path):
        path = _concept_inner(path)
    bundles = _bundles(path)
    if bundles is not None:  # loaded with the LoRA: the first bundled embedding
        name, data = next(iter(bundles.items()))
        try:
            _vec, width = _create_embedding_from_data(data)
        except Exception:  # noqa: BLE001
            return "error", name
        return ("loads" if width == {"sd1": 768, "sd2": 1024, "sdxl": 2048}[family] else "skipped"), name
    got = _webui_load(path, safe=True)
    if isinstance(got, str):
        return got, None
    name, data = got
    try:
        vec, width = _create_embedding_from_data(data)
    except Exception:  # noqa: BLE001
        return "error", name
    expected = {"sd1": 768, "sd2": 1024, "sdxl": 2048}[family]
    if width != expected:
        return "skipped", name
    return ("partial" if _unused(vec, ("clip_l", "clip_g")) else "loads"), name


FORGE_ENGINES = {"sd1": [("clip_l", 768)], "sd2": [("clip_h", 1024)], "sdxl": [("clip_l", 2048), ("clip_g", 2048)], "sd3": [("clip_l", 768), ("clip_g", 1280)], "flux": [("clip_l", 768)]}


def forge(path: str, family: str) -> tuple[str, str | None]:
    if os.path.isdir(path):
        path = _concept_inner(path)
    if _bundles(path) is not None:
        return "skipped", None  # Forge's LoRA code never reads bundle_emb.* keys
    got = _webui_load(path, safe=False)
    if isinstance(got, str):
        return got, None
    name, data = got
    try:
        vec, width = _create_embedding_from_data(data)
    except Exception:  # noqa: BLE001
        return "error", name
    fits = [width == w and (not isinstance(vec, dict) or key in vec) for key, w in FORGE_ENGINES[family]]
    used = [key for (key, _w), ok in zip(FORGE_ENGINES[family], fits) if ok]
    if all(fits) and _unused(vec, used):
        return "partial", name
    return ("loads" if all(fits) else "partial" if any(fits) else "skipped"), name


def _concept_inner(folder: str) -> str:
    for n in ("learned_embeds.safetensors", "learned_embeds.bin"):
        if os.path.isfile(os.path.join(folder, n)):
            return os.path.join(folder, n)
    raise FileNotFoundError(folder)


# -- ComfyUI comfy/sd1_clip.py -----------------------------------------------------------------------
COMFY_ENCODERS = {"sd1": [("clip_l", 768)], "sd2": [("clip_h", 1024)], "sdxl": [("clip_l", 768), ("clip_g", 1280)], "sd3": [("clip_l", 768), ("clip_g", 1280), ("t5xxl", 4096)], "flux": [("clip_l", 768), ("t5xxl", 4096)]}


def _safe_load_embed_zip(path: str):
    import torch

    with zipfile.ZipFile(path) as myzip:
        names = [n for n in myzip.namelist() if "data/" in n]
        names.reverse()
        for n in names:
            data = myzip.read(n)
            number = len(data) // 4
            if number < 768:
                continue
            length_embed = 1024 if number % 768 else 768
            num = number // length_embed
            return torch.frombuffer(bytearray(data), dtype=torch.float).reshape((num, length_embed)).clone()
    return None


def comfyui(path: str, family: str) -> tuple[str, str | None]:
    import safetensors.torch
    import torch

    if os.path.isdir(path):
        inner = _concept_inner(path)
        trigger = f"embedding:{os.path.basename(path)}/{os.path.splitext(os.path.basename(inner))[0]}"
        path = inner
    else:
        stem, ext = os.path.splitext(os.path.basename(path))
        trigger = f"embedding:{stem if ext in ('.safetensors', '.pt', '.bin') else os.path.basename(path)}"
    if any(c.isspace() for c in trigger):
        return "error", None
    try:
        if path.lower().endswith(".safetensors"):
            embed = safetensors.torch.load_file(path, device="cpu")
        else:
            try:
                embed = torch.load(path, weights_only=True, map_location="cpu")
            except Exception:  # noqa: BLE001
                embed = _safe_load_embed_zip(path)
                if embed is None:
                    raise
    except Exception:  # noqa: BLE001
        return "error", trigger
    if any(k.startswith("bundle_emb.") for k in (embed if isinstance(embed, dict) else {})):
        return "skipped", None  # it is a LoRA: the LoRA loader ignores bundle keys
    fits, used = [], []
    for key, width in COMFY_ENCODERS[family]:
        src = None
        if isinstance(embed, torch.Tensor):
            out = embed
        elif "string_to_param" in embed:
            out = next(iter(embed["string_to_param"].values()))
        elif key in embed:
            out, src = embed[key], key
        else:
            src, out = next(iter(embed.items()))
        fits.append(out.shape[-1] == width)
        if fits[-1] and src is not None:
            used.append(src)  # the tensor this encoder took
    if all(fits) and isinstance(embed, dict) and "string_to_param" not in embed and _unused(embed, used):
        return "partial", trigger
    return ("loads" if all(fits) else "partial" if any(fits) else "skipped"), trigger


# -- InvokeAI ------------------------------------------------------------------------------------
INVOKE_EXTS = (".ckpt", ".bin", ".pth", ".safetensors", ".pt", ".gguf")
INVOKE_RE = re.compile(r"<[a-zA-Z0-9., _-]+>")


def invokeai(path: str, family: str) -> tuple[str, str | None]:
    import safetensors.torch
    import torch

    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "learned_embeds.bin")):
            name, path = os.path.basename(path), os.path.join(path, "learned_embeds.bin")
        else:
            path = _concept_inner(path)
            name = Path(path).stem
    else:
        if Path(path).suffix.lower() not in INVOKE_EXTS:
            return "ignored", None
        name = Path(path).stem
    if not INVOKE_RE.fullmatch(f"<{name}>"):
        return "error", None
    trigger = f"<{name}>"
    try:
        sd = safetensors.torch.load_file(path) if path.endswith(".safetensors") else torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001
        return "error", trigger
    if any(k.startswith("bundle_emb") for k in sd):
        return "skipped", None
    looks = "string_to_param" in sd or "emb_params" in sd or "clip_g" in sd or (len(sd) < 10 and all(isinstance(v, torch.Tensor) for v in sd.values()))
    if not looks:
        return "error", trigger
    try:
        if "string_to_token" in sd:
            token_dim = list(sd["string_to_param"].values())[0].shape[-1]
        elif "emb_params" in sd:
            token_dim = sd["emb_params"].shape[-1]
        elif "clip_g" in sd:
            token_dim = sd["clip_g"].shape[-1]
        else:
            token_dim = list(sd.values())[0].shape[0]
    except Exception:  # noqa: BLE001
        return "error", trigger
    base = {768: "sd1", 1024: "sd2", 1280: "sdxl"}.get(token_dim)
    if base is None:
        return "error", trigger
    if base != family:
        return "skipped", trigger
    if "string_to_param" in sd:
        emb, emb2 = next(iter(sd["string_to_param"].values())), None
    elif "emb_params" in sd:
        emb, emb2 = sd["emb_params"], None
    elif "clip_g" in sd and "clip_l" in sd:
        emb, emb2 = sd["clip_g"], sd["clip_l"]
    else:
        emb, emb2 = next(iter(sd.values())), None
    if emb.dim() == 1:
        emb = emb.unsqueeze(0)
    if family == "sdxl":
        for width in (768, 1280):
            pick = emb2 if emb2 is not None and emb2.shape[1] == width else emb
            if pick.shape[1] != width:
                return "error", trigger
        if emb2 is not None and _unused(sd, ("clip_l", "clip_g")):
            return "partial", trigger
    return "loads", trigger


# -- diffusers: its own loader ---------------------------------------------------------------------
class _NoVocab:
    def get_vocab(self):
        return {}


def diffusers(path: str, family: str) -> tuple[str, str | None]:
    from diffusers.loaders.textual_inversion import TextualInversionLoaderMixin, load_textual_inversion_state_dicts

    if not os.path.isdir(path) and _bundles(path) is not None:
        return "skipped", None  # no code in diffusers reads bundle_emb.* keys
    if family == "sd3":
        return "error", None  # StableDiffusion3Pipeline has no TextualInversionLoaderMixin
    try:
        [sd] = load_textual_inversion_state_dicts([path])
        tokens, embeddings = TextualInversionLoaderMixin._retrieve_tokens_and_embeddings([None], [sd], _NoVocab())
    except Exception:  # noqa: BLE001
        return "error", None
    width = embeddings[0].shape[-1]
    token = tokens[0]
    if family == "sdxl":
        return ("partial" if width in (768, 1280) else "error"), token
    want = {"sd1": 768, "sd2": 1024, "flux": 768}[family]
    return ("loads" if width == want else "error"), token


# -- SD.Next modules/textual_inversion.py ----------------------------------------------------------


def sdnext(path: str, family: str) -> tuple[str, str | None]:
    import torch
    from safetensors import safe_open

    if os.path.isdir(path):
        path = os.path.join(path, "learned_embeds.safetensors")
        if not os.path.isfile(path):
            return "ignored", None
    stem, ext = os.path.splitext(os.path.basename(path))
    if ext.upper() not in (".SAFETENSORS", ".PT") or stem.upper().endswith(".PREVIEW") or os.path.getsize(path) == 0:
        return "ignored", None
    try:
        if ext.upper() == ".SAFETENSORS":
            with safe_open(path, framework="pt") as f:
                keys = list(f.keys())
                vecs = [f.get_tensor(k) for k in keys]
            bundle = [k for k in keys if k.startswith("bundle_emb.")]
            if bundle:  # modules/lora/lora_load.py: emb_name = key.split('.')[1], loaded with the LoRA
                stem = bundle[0].split(".")[1]
                vecs = [t for k, t in zip(keys, vecs) if k.startswith("bundle_emb.") and k.split(".")[1] == stem]
        else:
            vecs = [torch.load(path, map_location="cpu")["string_to_param"]["*"]]
    except KeyError:
        return "skipped", stem
    except Exception:  # noqa: BLE001
        return "error", stem
    if any(v.dim() == 1 for v in vecs):
        return "error", stem
    if family not in ("sd1", "sd2", "sdxl"):
        return "skipped", stem
    hidden = {"sd1": [768], "sd2": [1024], "sdxl": [768, 1280]}[family]
    sizes = [v.shape[-1] for v in vecs]
    if not all(s in hidden for s in sizes) or len(sizes) > len(hidden) or (len(sizes) < len(hidden) and len(sizes) != 2):
        return "skipped", stem
    if len(set(sizes)) < len(sizes):
        return "error", stem  # both into one encoder
    return "loads", stem


ORACLES = {"a1111": a1111, "forge": forge, "comfyui": comfyui, "invokeai": invokeai, "diffusers": diffusers, "sdnext": sdnext}
FAMILIES = {"a1111": ("sd1", "sd2", "sdxl"), "forge": ("sd1", "sd2", "sdxl", "sd3", "flux"), "comfyui": ("sd1", "sd2", "sdxl", "sd3", "flux"),
            "invokeai": ("sd1", "sd2", "sdxl", "sd3", "flux"), "diffusers": ("sd1", "sd2", "sdxl", "sd3", "flux"), "sdnext": ("sd1", "sd2", "sdxl", "sd3", "flux")}
