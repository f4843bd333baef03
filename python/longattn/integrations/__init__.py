"""Integrations of longattn with model libraries, one module each, imported
on demand (importing this package imports none of them):

- longattn.integrations.transformers: register() adds
  attn_implementation="longattn" to Hugging Face transformers.
"""
