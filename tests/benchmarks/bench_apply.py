"""Benchmark: apply 50 embeddings to a text encoder of real CLIP-L size (49408 x 768).

Compares, in the same run and on the same machine:

* ``embkit.diffusers.apply(host, embeddings)``: one call, one matrix resize;
* ``embkit.diffusers.load_textual_inversion(host, state_dicts, token=names)``: the drop-in, called
  exactly as diffusers' loader is below (torch state dicts in, one resize);
* diffusers' ``load_textual_inversion`` given the same 50 as one list;
* diffusers' ``load_textual_inversion`` called 50 times, once per embedding (what most scripts do).

The encoder is ``CLIPTextModel`` built from a config of CLIP-L's real vocabulary and width with one
layer (the matrix size is what costs; layers do not), with a locally built tokenizer of the real
size. Targets, for apply and for the drop-in alike: at least 5x faster than the list call, 50x
faster than 50 calls. A missed target is printed and the script exits 1. Unloading is timed too
(embkit's ``unload_textual_inversion()`` against diffusers' on the same 50), without a target.

    python tests/benchmarks/bench_apply.py [--count 50] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np


class Host:
    """The two attributes both loaders need, plus what diffusers' mixin reads from a pipeline."""

    hf_device_map = None

    def __init__(self, tokenizer, text_encoder):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder

    @property
    def components(self) -> dict:
        return {"tokenizer": self.tokenizer, "text_encoder": self.text_encoder}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for embkit and the list call")
    args = parser.parse_args()

    import torch
    from diffusers.loaders import TextualInversionLoaderMixin
    from transformers import CLIPTextModel

    from embkit.diffusers import apply, load_textual_inversion, unload, unload_textual_inversion
    from embkit.schema import Embedding
    from embkit.diffusers.tiny import clip_text_config, clip_tokenizer

    class DiffusersHost(Host, TextualInversionLoaderMixin):
        pass

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    base_tokenizer = clip_tokenizer(49408)
    base_encoder = CLIPTextModel(clip_text_config(768, 49408)).eval()
    print(f"text encoder: {tuple(base_encoder.get_input_embeddings().weight.shape)}, torch threads {torch.get_num_threads()}")
    embeddings = [Embedding(f"<bench-{i}>", {"clip_l": (rng.standard_normal((1 + i % 8, 768)) * 0.1).astype(np.float32)}) for i in range(args.count)]
    rows = sum(e.num_vectors for e in embeddings)
    state_dicts = [{e.name: torch.from_numpy(np.array(e.vectors["clip_l"]))} for e in embeddings]
    names = [e.name for e in embeddings]

    def fresh(cls):
        return cls(clip_tokenizer(49408), copy.deepcopy(base_encoder))

    # embkit and the list call: best of --repeat on fresh encoders (the first embkit call also pays
    # one-time imports; it is printed too). The 50 calls run once: they take a minute.
    host = fresh(Host)
    embkit_times, unload_times = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        apply(host, embeddings)
        embkit_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        unload(host)
        unload_times.append(time.perf_counter() - start)
    t_embkit, t_unload = min(embkit_times), min(unload_times)

    drop_in_times, drop_out_times = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        load_textual_inversion(host, state_dicts, token=names)
        drop_in_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        unload_textual_inversion(host)
        drop_out_times.append(time.perf_counter() - start)
    t_drop_in, t_drop_out = min(drop_in_times), min(drop_out_times)

    list_times = []
    for _ in range(args.repeat):
        listed = fresh(DiffusersHost)
        start = time.perf_counter()
        listed.load_textual_inversion(state_dicts, token=names)
        list_times.append(time.perf_counter() - start)
    t_list = min(list_times)
    start = time.perf_counter()
    type(listed).unload_textual_inversion(listed)
    t_their_unload = time.perf_counter() - start
    listed.load_textual_inversion(state_dicts, token=names)  # back, for the row check below

    single = fresh(DiffusersHost)
    start = time.perf_counter()
    for sd, name in zip(state_dicts, names):
        single.load_textual_inversion(sd, token=name)
    t_calls = time.perf_counter() - start

    # Same rows land under the same ids (a sanity check, not a timing).
    again = apply(host, embeddings)
    ours = host.text_encoder.get_input_embeddings().weight[list(again.ids["text_encoder"])]
    theirs = listed.text_encoder.get_input_embeddings().weight[list(again.ids["text_encoder"])]
    assert torch.equal(ours, theirs), "embkit and diffusers disagree on the rows"
    assert list(again.ids["text_encoder"]) == [listed.tokenizer.convert_tokens_to_ids(t) for t in again.tokens["text_encoder"]]

    ratios = {
        "embkit apply vs list call": (t_list / t_embkit, 5),
        "embkit apply vs one call each": (t_calls / t_embkit, 50),
        "embkit load_textual_inversion vs list call": (t_list / t_drop_in, 5),
        "embkit load_textual_inversion vs one call each": (t_calls / t_drop_in, 50),
    }
    print(f"{args.count} embeddings, {rows} token rows, into CLIP-L size (49408 x 768) on CPU")
    print(f"  embkit apply (one call)                    {t_embkit * 1000:9.1f} ms   (first call {embkit_times[0] * 1000:.1f} ms; unload {t_unload * 1000:.1f} ms)")
    print(f"  embkit load_textual_inversion (list)       {t_drop_in * 1000:9.1f} ms   (unload_textual_inversion() {t_drop_out * 1000:.1f} ms)")
    print(f"  diffusers load_textual_inversion (list)    {t_list * 1000:9.1f} ms   (unload_textual_inversion() {t_their_unload * 1000:.1f} ms)")
    print(f"  diffusers load_textual_inversion x{args.count:<3}      {t_calls * 1000:9.1f} ms")
    missed = []
    for what, (ratio, target) in ratios.items():
        print(f"  {what:48s} {ratio:7.1f}x  (target >= {target}x){'' if ratio >= target else '  MISSED'}")
        if ratio < target:
            missed.append(what)
    print(f"  against embkit's first call: {t_list / embkit_times[0]:.1f}x and {t_calls / embkit_times[0]:.1f}x")
    if missed:
        print(f"target missed: {', '.join(missed)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
