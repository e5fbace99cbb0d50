"""Per-video computation: decoding, face detection and tracking, crops, SSIM series, and the demo clips.

Everything one extraction task does to one video lives here (`extract.extract_video` ties it together). Modules
read frames and return arrays and small dataclasses; nothing here knows about the cache, models or plots.
"""
