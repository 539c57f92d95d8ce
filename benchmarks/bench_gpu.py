"""GPU figures in one prepared run: full VGG16, 1 s and 3 s segments, inherit and SSSL, fp32 and bf16.

Made for the GPU machine that is sometimes lent to this project (one H200,
no access to the datasets, 64 MiB of files carried): it generates its
segments on the machine and measures, for the paper's full VGG16 at each
segment duration:

* the raw train step (model alone) in fp32 and in bf16 autocast: segments/s,
  peak GPU memory, and the achieved FLOP/s as a share of the device's bf16
  dense peak (``--peak-tflops``; 989 for an H200 SXM);
* one inherit (plain cross-entropy) epoch and one SSSL epoch (partition
  pass included) of the real ``SSSLBrain.fit`` under SpeechBrain's
  ``precision`` (bf16 by default), with the breakdown of
  ``bench_epoch.py``, and the SSSL / inherit ratio;
* bf16 checked against fp32 on a few batches of the same weights: largest
  logit difference, loss difference, agreement of the predicted classes and
  cosine similarity of the gradients.

It runs on the CPU too (``--device cpu --models demo``, small sizes): that
is how it is tested (``tests/integration/test_benchmarks.py``). Usage on the GPU
machine, a few minutes in all::

    python benchmarks/bench_gpu.py --device cuda --json gpu.json
"""

import argparse
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_epoch import (  # noqa: E402
    frames_of,
    make_model,
    print_breakdown,
    profile_epochs,
    raw_step_throughput,
    sync,
    train_flops_per_segment,
)

H200_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H200 SXM datasheet, dense (without sparsity)


def peak_memory(device, fn, *args):
    """Runs ``fn(*args)``; returns (its result, peak memory in GiB on a CUDA device, else None)."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    out = fn(*args)
    sync(device)
    return out, (torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None)


def bf16_vs_fp32(name, frames, device, batches=3, batch_size=16):
    """bf16 autocast against fp32 on the same weights and batches (train mode, fixed dropout seed)."""
    torch.manual_seed(0)
    model = make_model(name).to(device).train()
    worst_logit, worst_loss, agree, cosines = 0.0, 0.0, [], []
    for b in range(batches):
        x = torch.randn(batch_size, frames, 128, device=device)
        y = torch.randint(0, 4, (batch_size,), device=device)
        out = {}
        for precision in ("fp32", "bf16"):
            torch.manual_seed(1000 + b)  # the same dropout masks in both passes
            model.zero_grad(set_to_none=True)
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                                enabled=precision == "bf16"):
                logits = model(x)
                loss = torch.nn.functional.cross_entropy(logits.float(), y)
            loss.backward()
            grad = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
            out[precision] = (logits.float().detach(), loss.item(), grad)
        (l32, loss32, g32), (l16, loss16, g16) = out["fp32"], out["bf16"]
        worst_logit = max(worst_logit, float((l32 - l16).abs().max()))
        worst_loss = max(worst_loss, abs(loss32 - loss16))
        agree.append(float((l32.argmax(-1) == l16.argmax(-1)).float().mean()))
        cosines.append(float(torch.nn.functional.cosine_similarity(g32, g16, dim=0)))
    return {"max_abs_logit_diff": worst_logit, "max_abs_loss_diff": worst_loss,
            "argmax_agreement": sum(agree) / len(agree), "min_grad_cosine": min(cosines)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="full", help="comma-separated: full, demo")
    ap.add_argument("--seg-durs", default="1,3")
    ap.add_argument("--segments", type=int, default=8192, help="training segments of each epoch")
    ap.add_argument("--batch-size", type=int, default=64, help="the yaml's batch size")
    ap.add_argument("--steps", type=int, default=30, help="raw train steps timed")
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16"), help="of the epochs")
    ap.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    ap.add_argument("--u-share", type=float, default=0.265)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run with --device cpu for the CPU path")
    name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "cpu"
    print(f"{name}; epochs in {args.precision}; batch {args.batch_size}; "
          f"bf16 peak {args.peak_tflops} TFLOP/s")
    work = tempfile.mkdtemp(prefix="sssl_bench_gpu_")
    rows = []
    for model in args.models.split(","):
        for seconds in (float(d) for d in args.seg_durs.split(",")):
            frames = frames_of(seconds)
            flops = train_flops_per_segment(make_model(model), frames, args.device)
            row = {"model": model, "seg_dur": seconds, "train_gflop_per_seg": flops / 1e9}
            for precision in ("fp32", "bf16"):
                torch.manual_seed(0)
                rate, mem = peak_memory(args.device, raw_step_throughput, make_model(model), frames,
                                        args.batch_size, args.steps, args.device, precision)
                row[f"raw_{precision}_seg_per_s"] = rate
                row[f"raw_{precision}_peak_gib"] = mem
                row[f"raw_{precision}_share_of_bf16_peak"] = rate * flops / (args.peak_tflops * 1e12)
            (base, sssl, n_train, n_valid), mem = peak_memory(
                args.device, profile_epochs, model, args.segments, max(8, args.segments // 10), seconds,
                args.batch_size, args.u_share, args.device, args.precision, work)
            row.update(inherit_epoch=base, sssl_epoch=sssl, epochs_peak_gib=mem,
                       inherit_seg_per_s=n_train / base["wall"], sssl_seg_per_s=n_train / sssl["wall"],
                       sssl_over_inherit=sssl["wall"] / base["wall"],
                       bf16_check=bf16_vs_fp32(model, frames, args.device))
            rows.append(row)
            print(f"\n{model} VGG16, {seconds:g} s ({frames} frames), {flops / 1e9:.2f} GFLOP per training "
                  "segment")
            for precision in ("fp32", "bf16"):
                mem = row[f"raw_{precision}_peak_gib"]
                print(f"  raw train step {precision}: {row[f'raw_{precision}_seg_per_s']:9.0f} seg/s, "
                      f"{100 * row[f'raw_{precision}_share_of_bf16_peak']:5.1f} % of the bf16 peak"
                      + (f", peak memory {mem:.1f} GiB" if mem is not None else ""))
            print_breakdown(f"inherit epoch ({n_train} segments, {args.precision})", base, n_train, n_valid)
            print_breakdown(f"SSSL epoch ({args.precision})", sssl, n_train, n_valid)
            print(f"  epochs: inherit {row['inherit_seg_per_s']:.0f} seg/s, SSSL {row['sssl_seg_per_s']:.0f} "
                  f"seg/s, SSSL / inherit {row['sssl_over_inherit']:.2f}x")
            check = row["bf16_check"]
            print(f"  bf16 vs fp32: max |logit diff| {check['max_abs_logit_diff']:.3g}, max |loss diff| "
                  f"{check['max_abs_loss_diff']:.3g}, argmax agreement "
                  f"{100 * check['argmax_agreement']:.1f} %, "
                  f"min gradient cosine {check['min_grad_cosine']:.4f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device": name, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
