"""Single-file checkpoints as render targets: what embkit reads from them without torch (names and
shapes, .ckpt through the allow-list unpickler), the model type and prediction type, the built-in
configs against full-size key layouts (SDXL from a generated header: no 7 GB file), and pipelines
built from tiny checkpoints in the original key layout, offline, compared with their source."""

from __future__ import annotations

import pickle
import sys
import types
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import embkit  # noqa: E402
from embkit.diffusers.pipelines import single_file_pipeline  # noqa: E402
from embkit.diffusers.tiny import clip_tokenizer, tiny_pipeline  # noqa: E402
from embkit.model import architecture  # noqa: E402
from embkit.model.checkpoint import open_checkpoint  # noqa: E402
from embkit.model.configs import configs_for  # noqa: E402
from singlefile_fixtures import full_size_keys, tiny_single_file, write_clip_vocab  # noqa: E402
from validate_fixtures import write_sparse_checkpoint  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny pipelines render faster on one thread (on a busy machine, several times faster), as embkit renders them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return write_clip_vocab(tmp_path_factory.mktemp("tok") / "tokenizer", 1190)


def _image(pipe, prompt="a photo of sks", seed=3):
    out = pipe(prompt, num_inference_steps=2, height=64, width=64, generator=torch.Generator().manual_seed(seed), output_type="np")
    return out.images[0]


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_tiny_single_file_renders_as_its_source_pipeline(family, tmp_path, vocab):
    source, configs = tiny_single_file(family, tmp_path / f"{family}.safetensors")
    if family == "sd2":
        source.tokenizer = clip_tokenizer(pad_token="!")  # SD2 pads with "!" (id 0), as embkit sets it up
    loaded = single_file_pipeline(str(tmp_path / f"{family}.safetensors"), configs=configs, tokenizer=str(vocab), vocab_size=1190, search=False)
    pipe = loaded.pipe
    assert type(pipe).__name__ == type(source).__name__ and loaded.notes[0].startswith(f"{family.upper()} (")
    assert pipe.safety_checker is None if family != "sdxl" else pipe.tokenizer_2.pad_token == "!"
    assert pipe.tokenizer.model_max_length == 77 and len(pipe.tokenizer) == 1190
    for name, tensor in source.unet.state_dict().items():
        assert torch.equal(pipe.unet.state_dict()[name], tensor), name
    assert np.array_equal(_image(pipe), _image(source))


def _fake_lightning():
    """pytorch_lightning's ModelCheckpoint as a class torch.save pickles by name (no Lightning installed)."""
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = module.__name__, "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    return {"pytorch_lightning": types.ModuleType("pytorch_lightning"), "pytorch_lightning.callbacks": types.ModuleType("pytorch_lightning.callbacks"),
            module.__name__: module}, ModelCheckpoint


def test_lightning_ckpt_with_numpy_scalars_reads_and_renders(tmp_path, vocab, monkeypatch):
    modules, callback = _fake_lightning()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    path = tmp_path / "model.ckpt"
    extra = {"global_step": np.int64(470000), "epoch": np.int64(3), "pytorch-lightning_version": "1.4.2",
             "callbacks": {callback: {"best_model_score": np.float32(0.25), "dirpath": "logs"}}}
    source, configs = tiny_single_file("sd1", path, extra=extra)
    with zipfile.ZipFile(path) as zf:  # what the file really asks for
        pkl = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    assert b"numpy._core.multiarray" in pkl or b"numpy.core.multiarray" in pkl
    assert b"pytorch_lightning.callbacks.model_checkpoint" in pkl
    ckpt = open_checkpoint(path)
    assert ckpt.container == "pickle" and ckpt.extra == {"global_step": 470000, "epoch": 3, "pytorch-lightning_version": "1.4.2"}
    assert architecture.detect(ckpt).model_type == "v1"
    key = "first_stage_model.decoder.conv_out.weight"
    assert np.array_equal(ckpt.array(key), source.vae.state_dict()["decoder.conv_out.weight"].numpy())
    loaded = single_file_pipeline(str(path), configs=configs, tokenizer=str(vocab), vocab_size=1190, search=False)
    assert np.array_equal(_image(loaded.pipe), _image(source))
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]  # the scratch .safetensors went with its temporary folder
    # the checkpoint-only globals are not allowed for embedding files
    with pytest.raises(embkit.UnsafeFileError, match="multiarray"):
        embkit.read(path)
    assert embkit.resolve_target(str(path)).family == "sd1"  # verify --model model.ckpt (validation) reads it too


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_ckpt_refusals_name_the_global_or_the_cap_and_the_safe_alternative(tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(2)}, "hook": _Evil()}, str(evil))
    with pytest.raises(embkit.UnsafeFileError) as info:
        open_checkpoint(evil)
    assert "posix.system" in str(info.value) or "os.system" in str(info.value)
    assert ".safetensors release" in str(info.value) and info.value.exit_code == 5

    class HugeStorage(pickle.Pickler):  # a storage declaring 2**31 floats: past the caps, in a 1 KB file
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 2**31) if obj is marker else None

    marker = object()
    huge = tmp_path / "huge.ckpt"
    with zipfile.ZipFile(huge, "w") as zf:
        with zf.open("archive/data.pkl", "w") as fh:
            HugeStorage(fh, protocol=2).dump({"state_dict": {"w": marker}})
    with pytest.raises(embkit.TooLargeError, match="past the cap.*convert the .ckpt to .safetensors once in a sandbox"):
        open_checkpoint(huge)


def _sparse(path, shapes, **extra):
    entries = {k: ("F16", list(v)) for k, v in shapes.items()}
    entries.update({k: ("F16", list(v)) for k, v in extra.items()})
    return write_sparse_checkpoint(path, entries)


@pytest.fixture(scope="module")
def xl_keys():
    return full_size_keys("xl_base")


def test_sdxl_header_is_detected_and_maps_onto_the_built_in_configs(tmp_path, xl_keys):
    """A generated full-size SDXL header (sparse file: no 7 GB), checked against what diffusers itself
    makes of it: its model-type detection and its original→diffusers converters, whose output must
    fill models built from embkit's configs key for key and shape for shape."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    path = _sparse(tmp_path / "sdxl.safetensors", xl_keys)
    ckpt = open_checkpoint(path)
    count = lambda p: sum(k.startswith(p) for k in ckpt.tensors)  # noqa: E731
    # the key counts of the real file (sd_xl_base_1.0.safetensors): 1680 UNet, 248 VAE, 196 + 390 text
    assert (count("model.diffusion_model."), count("first_stage_model."), count("conditioner.embedders.0."), count("conditioner.embedders.1.")) == (1680, 248, 196, 390)
    assert ckpt.shape("model.diffusion_model.label_emb.0.0.weight") == (1280, 2816)
    assert ckpt.shape("conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight") == (3840, 1280)
    arch = architecture.detect(ckpt)
    assert (arch.model_type, arch.family, set(arch.components)) == ("xl_base", "sdxl", {"unet", "vae", "text_encoder", "text_encoder_2"})
    architecture.check_complete(ckpt, arch)
    assert architecture.prediction_type(ckpt, arch) == ("epsilon", "default")
    meta = {k: torch.empty(v, device="meta") for k, v in xl_keys.items()}
    assert sfu.infer_diffusers_model_type(meta) == "xl_base"
    cfg = configs_for("xl_base")
    clean = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(clean(cfg["unet"]))
        vae = AutoencoderKL.from_config(clean(cfg["vae"]))
        te = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"]))

    def same(converted, model, strip=""):
        want = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("position_ids")}
        got = {k.removeprefix(strip): tuple(v.shape) for k, v in converted.items()}
        assert got == want

    same(sfu.convert_ldm_unet_checkpoint(meta, dict(unet.config)), unet)
    same(sfu.convert_ldm_vae_checkpoint(meta, dict(vae.config)), vae)
    same(sfu.convert_ldm_clip_checkpoint(meta, "conditioner.embedders.0.transformer."), te, "text_model.")
    same(sfu.convert_open_clip_checkpoint(te2, meta, prefix="conditioner.embedders.1.model."), te2)
    assert cfg["text_encoder_2"]["eos_token_id"] == 49407 and cfg["vae"]["scaling_factor"] == 0.13025


@pytest.mark.parametrize("model_type,family", [("v1", "sd1"), ("v2", "sd2")])
def test_sd1_and_sd2_headers_are_detected_as_diffusers_detects_them(tmp_path, model_type, family):
    from diffusers.loaders import single_file_utils as sfu

    keys = full_size_keys(model_type)
    ckpt = open_checkpoint(_sparse(tmp_path / "m.safetensors", keys))
    assert architecture.detect(ckpt) == architecture.Architecture(model_type, family, ("unet", "vae", "text_encoder"))
    assert sfu.infer_diffusers_model_type({k: torch.empty(v, device="meta") for k, v in keys.items()}) == model_type
    assert len(keys) == {"v1": 1130, "v2": 686 + 248 + 294 - 12}[model_type]  # SD2: 23 of OpenCLIP-H's 24 blocks (12 tensors each)


def test_what_is_not_rendered_is_refused_by_name(tmp_path):
    cases = {
        "sd3": {"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": (9216,)},
        "flux": {"double_blocks.0.img_attn.norm.key_norm.scale": (128,)},
        "xl_refiner": {"conditioner.embedders.0.model.token_embedding.weight": (49408, 1280)},
        "inpainting": {"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)},
    }
    for model_type, shapes in cases.items():
        ckpt = open_checkpoint(_sparse(tmp_path / f"{model_type}.safetensors", shapes))
        arch = architecture.detect(ckpt)
        assert arch.model_type == model_type and not arch.renderable
        with pytest.raises(embkit.TargetError, match="embkit renders single-file SD1.x, SD2.x and SDXL base"):
            architecture.check_complete(ckpt, arch)
    sd1 = full_size_keys("v1")
    no_vae = {k: v for k, v in sd1.items() if not k.startswith("first_stage_model.")}
    ckpt = open_checkpoint(_sparse(tmp_path / "novae.safetensors", no_vae))
    with pytest.raises(embkit.TargetError, match=r"holds no VAE \(first_stage_model\.\*\)"):
        architecture.check_complete(ckpt, architecture.detect(ckpt))
    partial = {k: v for k, v in sd1.items() if k != "first_stage_model.decoder.conv_out.weight"}
    ckpt = open_checkpoint(_sparse(tmp_path / "partial.safetensors", partial))
    with pytest.raises(embkit.TargetError, match="vae is incomplete: first_stage_model.decoder.conv_out.weight missing"):
        architecture.check_complete(ckpt, architecture.detect(ckpt))


def _sd2_with_probe(path, std):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    save_file({"cond_stage_model.model.token_embedding.weight": np.zeros((4, 1024), np.float16),
               architecture.SD2_V_PROBE: (rng.standard_normal(320) * std).astype(np.float16)}, str(path))
    return open_checkpoint(path)


def test_prediction_type_order_option_sidecar_marker_estimate_default(tmp_path):
    v = _sd2_with_probe(tmp_path / "v.safetensors", 0.2)
    eps = _sd2_with_probe(tmp_path / "eps.safetensors", 0.02)
    arch = architecture.detect(v)
    assert arch.family == "sd2"
    assert architecture.prediction_type(v, arch)[0] == "v_prediction" and "ComfyUI" in architecture.prediction_type(v, arch)[1]
    assert architecture.prediction_type(eps, arch)[0] == "epsilon"
    assert architecture.prediction_type(v, arch, "epsilon") == ("epsilon", "--prediction")
    (tmp_path / "v.yaml").write_text('model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    parameterization: "eps"\n')
    assert architecture.prediction_type(v, arch) == ("epsilon", f"sidecar {tmp_path / 'v.yaml'}")
    (tmp_path / "eps.yaml").write_text("model:\n  params:\n    parameterization: v\n")
    assert architecture.prediction_type(eps, arch)[0] == "v_prediction"
    assert architecture.config_type(arch, "epsilon") == "v2-base" and architecture.config_type(arch, "v_prediction") == "v2"
    bare = open_checkpoint(_sparse(tmp_path / "bare.safetensors", {"cond_stage_model.model.token_embedding.weight": (4, 1024)}))
    assert architecture.prediction_type(bare, architecture.detect(bare))[0] == "v_prediction"  # SD2's documented default
    xl = open_checkpoint(_sparse(tmp_path / "xl.safetensors", {"conditioner.embedders.1.model.token_embedding.weight": (4, 1280), "v_pred": (0,)}))
    assert architecture.prediction_type(xl, architecture.detect(xl)) == ("v_prediction", "the checkpoint's v_pred marker")
    with pytest.raises(embkit.TargetError, match="unknown prediction type"):
        architecture.normalise_prediction("x0")


def test_configs_are_the_published_architectures_with_clips_real_end_token():
    v1, v2, base = configs_for("v1"), configs_for("v2", "v_prediction"), configs_for("v2-base")
    assert v1["unet"]["block_out_channels"] == [320, 640, 1280, 1280] and v1["unet"]["cross_attention_dim"] == 768
    assert v2["unet"]["cross_attention_dim"] == 1024 and v2["unet"]["upcast_attention"] and v2["unet"]["sample_size"] == 96
    assert base["unet"]["sample_size"] == 64 and not base["unet"]["upcast_attention"]
    assert v2["text_encoder"]["num_hidden_layers"] == 23 and v2["scheduler"]["prediction_type"] == "v_prediction"
    assert base["scheduler"]["prediction_type"] == "epsilon" and v1["scheduler"]["beta_end"] == 0.012
    assert all(c["text_encoder"]["eos_token_id"] == 49407 for c in (v1, v2, base))
    assert v1["model_index"]["safety_checker"] == [None, None]
    v1["unet"]["sample_size"] = 1  # a copy: the table is not changed
    assert configs_for("v1")["unet"]["sample_size"] == 64
    with pytest.raises(embkit.TargetError, match="no built-in configs"):
        configs_for("sd3")


def test_checkpoint_mode_builds_only_plain_numbers_and_is_documented(tmp_path):
    from conftest import ROOT
    from embkit.formats.pickle_ckpt import CHECKPOINT_GLOBALS

    text = (ROOT / "docs" / "safety.md").read_text()
    assert all(f"{module}.{name}" in text for module, name in CHECKPOINT_GLOBALS)
    for value in (np.str_("x"), np.array([1.0])):  # a unicode dtype; an ndarray (numpy's _reconstruct)
        path = tmp_path / "odd.ckpt"
        torch.save({"state_dict": {"a": torch.zeros(2)}, "odd": value}, str(path))
        with pytest.raises(embkit.UnsafeFileError, match="numpy dtype|_reconstruct"):
            open_checkpoint(path)
        path.unlink()
