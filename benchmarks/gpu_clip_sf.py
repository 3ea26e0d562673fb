"""CLIP_SF ViT-L/14 training (and embedding) speed and peak memory on one GPU.

Self-contained: a random-init OpenAI-architecture ViT-L/14 from open_clip (no weights, no
data, no network), wrapped in augret's CLIPScoreFusion, with augret's contrastive loss and
UniIR's AdamW groups, fp16 autocast and GradScaler, at UniIR's per-GPU batch of 105 queries
(+105 positives = 210 fused items per forward). Reports samples/s (queries/s) and peak memory.

Two modes side by side: ``augret`` (towers skip rows without their modality; text stops at the
batch's last EOT) and ``uniir`` (both towers on every row, zero images, all 77 positions, as
UniIR's CLIPScoreFusion). With every row carrying an image and text only trimming differs.

    python benchmarks/gpu_clip_sf.py                            # ViT-L-14, batch 105, fp16
    python benchmarks/gpu_clip_sf.py --embed                    # + inference at batch 2048
    python benchmarks/gpu_clip_sf.py --image-frac 0.5 --text-tokens 24
    python benchmarks/gpu_clip_sf.py --model tiny --device cpu --amp off --steps 3  # smoke
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from augret.encode.backbones import TINY_MODEL_CFG
from augret.encode.clip_sf import CLIPScoreFusion
from augret.train.config import OptimConfig
from augret.train.loop import build_optimizer
from augret.train.loss import contrastive_loss


class UniIRStyle(CLIPScoreFusion):
    """UniIR's encode_multimodal_input: both towers on all rows (zero images), 77 tokens."""

    def forward(self, text, image, txt_mask, img_mask):
        b = txt_mask.shape[0]
        if image.shape[0] != b:
            full = image.new_zeros(b, *image.shape[1:])
            full[img_mask.bool()] = image
            image = full
        txt = self.clip_model.encode_text(text["input_ids"]) * txt_mask[:, None]
        img = self.clip_model.encode_image(image) * img_mask[:, None]
        return txt + img


def build(model_name: str, uniir: bool) -> CLIPScoreFusion:
    import open_clip

    torch.manual_seed(0)
    if model_name == "tiny":
        clip = open_clip.model.CLIP(**TINY_MODEL_CFG)
    else:
        clip = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=True)
    cls = UniIRStyle if uniir else CLIPScoreFusion
    return cls(clip.float(), "open_clip")


def make_batch(n: int, size: int, text_tokens: int, image_frac: float, device: str,
               seed: int) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, 77, dtype=torch.long)
    for i in range(n):
        length = max(2, min(77, text_tokens + int(torch.randint(-4, 5, (1,), generator=g))))
        ids[i, 0] = 49406
        ids[i, 1:length - 1] = torch.randint(1, 49405, (length - 2,), generator=g)
        ids[i, length - 1] = 49407
    img_mask = (torch.rand(n, generator=g) < image_frac).float()
    images = torch.randn(int(img_mask.sum()), 3, size, size, generator=g)
    txt_mask = torch.ones(n)
    return ({"input_ids": ids.to(device)}, images.to(device), txt_mask.to(device),
            img_mask.to(device))


def autocast(device: str, amp: str):
    if amp == "off":
        return torch.autocast(device.split(":")[0], enabled=False)
    return torch.autocast(device.split(":")[0],
                          dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak(device: str) -> tuple[float, float]:
    if not device.startswith("cuda"):
        return float("nan"), float("nan")
    return (torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30)


def bench_train(args: argparse.Namespace, uniir: bool) -> dict:
    model = build(args.model, uniir).to(args.device).train()
    size = int(model.clip_model.visual.image_size[0]
               if isinstance(model.clip_model.visual.image_size, tuple)
               else model.clip_model.visual.image_size)
    opt = build_optimizer(model, OptimConfig())
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp == "fp16")
    b = args.batch
    batches = [make_batch(2 * b, size, args.text_tokens, args.image_frac, args.device, s)
               for s in range(2)]
    valid = torch.ones(b, dtype=torch.bool, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    try:
        for step in range(args.warmup + args.steps):
            text, image, tm, im = batches[step % 2]
            sync(args.device)
            t0 = time.perf_counter()
            with autocast(args.device, args.amp):
                emb = model(text, image, tm, im)
                loss, _, _ = contrastive_loss(emb[:b], emb[b:], model.logit_scale, valid=valid)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            sync(args.device)
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
    except torch.cuda.OutOfMemoryError:
        return {"mode": "uniir" if uniir else "augret", "error": "out of memory",
                "peak_alloc_gib": peak(args.device)[0]}
    step_s = sorted(times)[len(times) // 2]
    alloc, reserved = peak(args.device)
    return {"mode": "uniir" if uniir else "augret", "step_ms": 1000 * step_s,
            "samples_per_s": b / step_s, "items_per_s": 2 * b / step_s,
            "peak_alloc_gib": alloc, "peak_reserved_gib": reserved, "loss": loss.item()}


@torch.no_grad()
def bench_embed(args: argparse.Namespace, uniir: bool) -> dict:
    model = build(args.model, uniir).to(args.device).eval()
    size = int(model.clip_model.visual.image_size[0]
               if isinstance(model.clip_model.visual.image_size, tuple)
               else model.clip_model.visual.image_size)
    text, image, tm, im = make_batch(args.embed_batch, size, args.text_tokens, args.image_frac,
                                     args.device, 7)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(2 + max(3, args.steps // 4)):
        sync(args.device)
        t0 = time.perf_counter()
        with autocast(args.device, args.amp):
            model(text, image, tm, im)
        sync(args.device)
        if step >= 2:
            times.append(time.perf_counter() - t0)
    t = sorted(times)[len(times) // 2]
    alloc, reserved = peak(args.device)
    return {"mode": "uniir" if uniir else "augret", "items_per_s": args.embed_batch / t,
            "batch_ms": 1000 * t, "peak_alloc_gib": alloc, "peak_reserved_gib": reserved}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-L-14", help="open_clip architecture or 'tiny'")
    ap.add_argument("--batch", type=int, default=105, help="queries per GPU (UniIR: 105)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--text-tokens", type=int, default=32,
                    help="mean text length in tokens incl. SOT/EOT (77 = always full)")
    ap.add_argument("--image-frac", type=float, default=1.0,
                    help="fraction of items with an image")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--amp", choices=["fp16", "bf16", "off"], default="fp16")
    ap.add_argument("--modes", default="augret,uniir")
    ap.add_argument("--embed", action="store_true", help="also measure inference")
    ap.add_argument("--embed-batch", type=int, default=2048, help="UniIR CLIP_SF: 2048")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda")
               else "cpu", "model": args.model, "batch": args.batch, "amp": args.amp,
               "text_tokens": args.text_tokens, "image_frac": args.image_frac,
               "torch": torch.__version__, "train": [], "embed": []}
    for m in modes:
        results["train"].append(bench_train(args, m == "uniir"))
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    if args.embed:
        for m in modes:
            results["embed"].append(bench_embed(args, m == "uniir"))
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"CLIP_SF {args.model} training on {results['device']}: batch "
                        f"{args.batch} queries (+{args.batch} positives), amp {args.amp}, "
                        f"~{args.text_tokens} tokens, {args.image_frac:.0%} with images")
    for col in ("mode", "step ms", "samples/s", "peak alloc GiB", "peak reserved GiB",
                "vs first"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    first = None
    for r in results["train"]:
        if "error" in r:
            table.add_row(r["mode"], r["error"], "", f"{r['peak_alloc_gib']:.1f}", "", "")
            continue
        first = first or r["samples_per_s"]
        table.add_row(r["mode"], f"{r['step_ms']:.1f}", f"{r['samples_per_s']:.1f}",
                      f"{r['peak_alloc_gib']:.2f}", f"{r['peak_reserved_gib']:.2f}",
                      f"{r['samples_per_s'] / first:.2f}x")
    console.print(table)
    if results["embed"]:
        table = Table(title=f"embedding at batch {args.embed_batch}")
        for col in ("mode", "items/s", "batch ms", "peak alloc GiB"):
            table.add_column(col, justify="left" if col == "mode" else "right")
        for r in results["embed"]:
            table.add_row(r["mode"], f"{r['items_per_s']:.0f}", f"{r['batch_ms']:.1f}",
                          f"{r['peak_alloc_gib']:.2f}")
        console.print(table)


if __name__ == "__main__":
    main()
