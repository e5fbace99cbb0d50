"""Where data lives: the cache tables (`cache`), dataset listings (`datasets`), the incremental extraction plan
(`plan`) and run directories (`rundir`), on a local disk or any fsspec URL.

Its schemas name the columns that `features.learn` computes, so it sits above `learn`; it never decodes video.
"""
