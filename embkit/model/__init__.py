"""The target: what a model's text encoders offer an embedding (slots, widths, vocabularies, prompt
limits, token norms), read from a family name, a diffusers folder, a single-file checkpoint, a live
pipeline or a Hub id. No torch, except when the target is a live pipeline."""
