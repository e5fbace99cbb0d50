"""Extraction throughput and memory, side by side in one run (issue: decode floor, notebook way, scaling).

    python bench/extract_speed.py                                        # generated demo clips
    python bench/extract_speed.py ../shared/data/dfdc-mini/train_sample_videos --clips 3

Measures on the same clips, in this order:
  1. decode floor: OpenCV reading every frame;
  2. our extraction per video (MTCNN default config, and Haar), split into decode / detect / track+crop /
     SSIM / write;
  3. the notebook's way on one clip: Haar on every full frame + tf.image.ssim on consecutive full RGB frames,
     all frames held in memory;
  4. scaling: videos per minute with 1 and 2 Dask workers (warm workers, same clips);
  5. memory: peak RSS of one extraction process on a short clip and on a >= 60 s loop of it.
Prints markdown tables and writes JSON (default bench/results/extract_speed.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import table, write_json  # noqa: E402


def decode_floor(path: str, threads: int = 0) -> tuple[float, int]:
    """Seconds to read every frame with OpenCV; threads=0 is FFmpeg's default (one per core)."""
    import cv2

    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads] if threads else [])
    n = 0
    started = time.perf_counter()
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    return time.perf_counter() - started, n


def ours(path: str, detector_kind: str, cache: str, prefetch_frames: int = 8, decode_threads: int = 0) -> dict:
    from features.config import ExtractConfig
    from features.store.delta_cache import DeltaCacheStore
    from features.video.extract import extract_video
    from tasks.extract import cap_threads, worker_detector

    cap_threads()
    config = ExtractConfig(detector=detector_kind, prefetch_frames=prefetch_frames, decode_threads=decode_threads)
    detector = worker_detector(config.detector, config.min_face_size, config.mtcnn_threshold, config.haar_min_neighbors,
                         "CPU:0", config.detect_normalize)
    started = time.perf_counter()
    result = extract_video(path, Path(path).stem, config, detector)
    row = {"video_id": Path(path).stem, "cache_key": "bench", **result.video}
    t = time.perf_counter()
    DeltaCacheStore(cache).write_video(row, result.faces, result.ssim)
    write_s = time.perf_counter() - t
    v = result.video
    return {"total_s": time.perf_counter() - started, "frames": v["frames_decoded"], "decode_s": v["decode_s"], "detect_s": v["detect_s"],
            "track_crop_s": v["track_crop_s"], "ssim_s": v["ssim_s"], "write_s": write_s,
            "keyframes_with_face": v["keyframes_with_face"], "keyframes": v["keyframes"], "status": result.status}


def notebook_way(path: str, max_frames: int | None) -> dict:
    """Haar on every full-resolution frame and tf.image.ssim on consecutive full RGB frames, all in memory."""
    import cv2
    import tensorflow as tf

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    started = time.perf_counter()
    cap = cv2.VideoCapture(path)
    frames = []
    while max_frames is None or len(frames) < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    decode = time.perf_counter() - started
    t = time.perf_counter()
    for frame in frames:
        cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 1.1, 5)
    detect = time.perf_counter() - t
    t = time.perf_counter()
    for a, b in itertools.pairwise(frames):
        tf.image.ssim(tf.convert_to_tensor(a), tf.convert_to_tensor(b), max_val=255).numpy()
    ssim = time.perf_counter() - t
    return {"frames": len(frames), "decode_s": decode, "detect_s": detect, "ssim_s": ssim,
            "total_s": time.perf_counter() - started}


def scaling(paths: list[str], workers: int, cache: str, prefetch_frames: int = 8, decode_threads: int = 0) -> dict:
    from distributed import Client, LocalCluster

    from flows.runtime import QUIET_ENV, WORKER_THREAD_ENV

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={**WORKER_THREAD_ENV, **QUIET_ENV}) as cluster, Client(cluster) as client:
        # Warm every worker (TensorFlow import, MTCNN weights) before timing.
        n = len(paths)
        client.gather(client.map(ours, [paths[0]] * workers, ["mtcnn"] * workers, [cache] * workers,
                                 [prefetch_frames] * workers, [decode_threads] * workers, pure=False))
        started = time.perf_counter()
        client.gather(client.map(ours, paths, ["mtcnn"] * n, [cache] * n, [prefetch_frames] * n,
                                 [decode_threads] * n, pure=False))
        elapsed = time.perf_counter() - started
    return {"workers": workers, "prefetch_frames": prefetch_frames, "decode_threads": decode_threads,
            "videos": len(paths), "seconds": elapsed,
            "videos_per_min": 60 * len(paths) / elapsed}


# VmHWM (peak RSS of this address space) rather than ru_maxrss, which survives exec and would report the
# size of the benchmark process that forked the child.
_RSS_SCRIPT = """
import json, sys, tempfile
sys.path.insert(0, {root!r})
from bench.extract_speed import ours
result = ours({path!r}, "mtcnn", tempfile.mkdtemp())
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({{"peak_rss_mb": hwm / 1024, "status": result["status"], "frames": result["frames"]}}))
"""


def peak_rss(path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT.format(root=str(ROOT), path=path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def loop_clip(path: str, seconds: float, out: Path) -> Path:
    """A >= `seconds` long clip made by looping `path` without re-encoding (imageio-ffmpeg's ffmpeg)."""
    import cv2
    import imageio_ffmpeg

    cap = cv2.VideoCapture(path)
    duration = cap.get(cv2.CAP_PROP_FRAME_COUNT) / (cap.get(cv2.CAP_PROP_FPS) or 30)
    loops = max(0, int(seconds / max(duration, 0.1)))
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-stream_loop", str(loops),
                    "-i", path, "-c", "copy", str(out)], check=True)
    return out


def detection_check(paths: list[str]) -> list[dict]:
    """Keyframes with a face: our fast path against plain MTCNN on every full-resolution keyframe."""
    import cv2

    from features.config import ExtractConfig
    from features.video.faces import MtcnnDetector

    config = ExtractConfig()
    plain = MtcnnDetector(normalize=False)
    rows = []
    for path in paths:
        cap = cv2.VideoCapture(path)
        index, found, keyframes = 0, 0, 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % config.keyframe_interval == 0:
                keyframes += 1
                found += len(plain.detect([plain.prepare(frame, 1.0)], 1.0)[0]) > 0
            index += 1
        fast = ours(path, "mtcnn", tempfile.mkdtemp())
        rows.append({"clip": Path(path).name, "full_res_mtcnn": found / keyframes,
                     "fast_path": fast["keyframes_with_face"] / fast["keyframes"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", help="folder of clips (default: generated demo clips)")
    parser.add_argument("--clips", type=int, default=4, help="clips to measure")
    parser.add_argument("--notebook-frames", type=int, default=None, help="cap the notebook way to N frames")
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--real-clips", nargs="*", default=[],
                        help="REAL clips for the detection check (fast path vs full-resolution MTCNN)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "extract_speed.json"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dfp-speed-"))
    if args.folder:
        paths = sorted(str(p) for p in Path(args.folder).glob("*.mp4"))[: args.clips]
    else:
        from features.video.demo import make_demo_dataset

        data = make_demo_dataset(tmp / "demo", n_clips=args.clips, frames=300, seed=0)
        paths = sorted(str(p) for p in data.glob("*.mp4"))
    cache = str(tmp / "cache")

    per_clip = []
    ours("" + paths[0], "mtcnn", cache)  # warm-up: TensorFlow and MTCNN load once, as in a worker
    for path in paths:
        floor_s, frames = decode_floor(path)
        floor1_s, _ = decode_floor(path, threads=1)
        m = ours(path, "mtcnn", cache)
        h = ours(path, "haar", cache)
        per_clip.append({"clip": Path(path).name, "frames": frames, "decode_floor_s": floor_s,
                         "decode_floor_1thread_s": floor1_s,
                         "mtcnn_s": m["total_s"], "mtcnn_x_floor": m["total_s"] / floor_s,
                         "mtcnn_x_floor_1thread": m["total_s"] / floor1_s,
                         "haar_s": h["total_s"], "haar_x_floor": h["total_s"] / floor_s,
                         **{f"mtcnn_{k}": m[k] for k in ("decode_s", "detect_s", "track_crop_s", "ssim_s", "write_s")},
                         "mtcnn_face_keyframes": f"{m['keyframes_with_face']}/{m['keyframes']}"})
    print("## Per clip (seconds; x_floor = time / decode floor with FFmpeg's default threads; _1thread = against a\n"
          "## one-thread decode, as each single-threaded worker decodes)\n")
    print(table(per_clip, ["clip", "frames", "decode_floor_s", "decode_floor_1thread_s", "mtcnn_s", "mtcnn_x_floor",
                           "mtcnn_x_floor_1thread", "haar_s", "haar_x_floor",
                           "mtcnn_decode_s", "mtcnn_detect_s", "mtcnn_track_crop_s", "mtcnn_ssim_s", "mtcnn_write_s",
                           "mtcnn_face_keyframes"]))

    nb = notebook_way(paths[0], args.notebook_frames)
    nb_per_frame = nb["total_s"] / nb["frames"]
    ours_per_frame = per_clip[0]["mtcnn_s"] / per_clip[0]["frames"]
    notebook = {"clip": per_clip[0]["clip"], **nb, "speedup_vs_notebook": nb_per_frame / ours_per_frame}
    print("\n## The notebook's way (Haar on every full frame + tf.image.ssim on full RGB frames)\n")
    print(table([notebook], ["clip", "frames", "decode_s", "detect_s", "ssim_s", "total_s", "speedup_vs_notebook"]))

    # Worker-per-core settings (what `dfp extract` uses on a local cluster), then single-video latency settings.
    scale = [scaling(paths, w, cache, pf, dt) for pf, dt in ((0, 1), (8, 0)) for w in (1, 2)]
    ratio = scale[1]["videos_per_min"] / scale[0]["videos_per_min"]
    ratio_latency = scale[3]["videos_per_min"] / scale[2]["videos_per_min"]
    print("\n## Scaling (warm Dask workers, one task thread each)\n")
    print(table(scale, ["workers", "prefetch_frames", "decode_threads", "videos", "seconds", "videos_per_min"]))
    print(f"\n2 workers / 1 worker throughput: {ratio:.2f}x with the worker-per-core settings (1 decode thread, "
          f"no decode-ahead), {ratio_latency:.2f}x with the single-video settings")

    long_clip = loop_clip(paths[0], args.long_seconds, tmp / "long.mp4")
    memory = [{"clip": "short", **peak_rss(paths[0])}, {"clip": f">= {args.long_seconds:.0f} s loop", **peak_rss(str(long_clip))}]
    print("\n## Peak RSS of one extraction process (MTCNN)\n")
    print(table(memory, ["clip", "frames", "peak_rss_mb", "status"]))

    detection = detection_check(args.real_clips) if args.real_clips else []
    if detection:
        print("\n## Keyframes with a face on REAL clips: fast path vs MTCNN on full-resolution keyframes\n")
        print(table(detection, ["clip", "full_res_mtcnn", "fast_path"]))
        gap = sum(r["full_res_mtcnn"] for r in detection) / len(detection) - sum(r["fast_path"] for r in detection) / len(detection)
        print(f"\nmean gap (full-res minus fast path): {100 * gap:+.1f} percentage points (target <= 5)")

    path = write_json(args.out, {"clips": paths, "detection_check": detection, "per_clip": per_clip, "notebook": notebook, "scaling": scale,
                                 "scaling_ratio": ratio, "scaling_ratio_single_video_settings": ratio_latency,
                                 "memory": memory})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
