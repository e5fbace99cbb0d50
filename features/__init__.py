"""Pure computation for deepfake-pipeline: decoding, faces, tracking, crops, SSIM and the cache.

Nothing here imports Prefect or Dask, so every function can be tested in milliseconds.
"""

# Bump when a change to features/ changes what extraction writes: every cached video is redone.
# "3": each stored crop also kept losslessly at the video's own pixel scale (faces.crop_lossless); "4": the face
# centre's block-grid traces on crop frames (faces.grid_blockiness) and the file size (videos.file_bytes);
# "5": the block grid measured where the coded grid falls in a rotated video's upright frames (crops.grid_phase).
FEATURE_CODE_VERSION = "5"
