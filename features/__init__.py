"""Pure computation for deepfake-pipeline: decoding, faces, tracking, crops, SSIM and the cache.

Nothing here imports Prefect or Dask, so every function can be tested in milliseconds.
"""

# Bump when a change to features/ changes what extraction writes: every cached video is redone.
# "3": each stored crop also kept losslessly at the video's own pixel scale (faces.crop_lossless).
FEATURE_CODE_VERSION = "3"
