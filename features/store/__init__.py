"""Where data lives: the cache tables (`cache`; as Delta Lake tables, opt-in, `delta_cache`), dataset listings
(`datasets`), the incremental extraction plan (`plan`), run directories (`rundir`), and what training reads of the
cache, once per run (`training_data`), on a local disk or any fsspec URL.

Its schemas name the columns that `features.learn` computes, so it sits above `learn`; it never decodes video.
"""
