"""What the GPU machine is: versions, the GPU, bf16, flash attention, the matrix-product rate, AdamW8bit.

The first phase of bench/gpu_acceptance.py, run in a child process there. The bf16 matrix-product
rate is the ceiling the training step's arithmetic is compared with.
"""

from __future__ import annotations

import subprocess


def environment() -> dict:
    """Versions, the GPU, bf16 and flash attention, the bf16 matrix-product rate, one AdamW8bit step."""
    import importlib.metadata as metadata
    import platform

    import torch

    info: dict = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "packages": {}}
    for name in ("diffusers", "transformers", "accelerate", "safetensors", "bitsandbytes", "peft", "numpy"):
        try:
            info["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info["packages"][name] = None
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(),
                    cudnn=torch.backends.cudnn.version())
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_smi"] = f"unavailable: {exc}"
        info["flash_attention"] = _try_flash_attention(torch)
        info["bf16_matmul_tflops"] = _matmul_rate(torch)
    info["adamw8bit_step"] = _adamw8bit_step(torch, device)
    return info


def _try_flash_attention(torch) -> dict:
    """Whether SDPA's flash kernel runs on this GPU at an SDXL attention shape."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(4, 10, 4096, 64, device="cuda", dtype=torch.bfloat16)
    result = {"flash_sdp_enabled": torch.backends.cuda.flash_sdp_enabled()}
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        try:
            with sdpa_kernel([backend]):
                torch.nn.functional.scaled_dot_product_attention(q, q, q)
            torch.cuda.synchronize()
            result[name] = True
        except Exception as exc:  # noqa: BLE001 - a missing backend is a finding, not a failure
            result[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
    return result


def _matmul_rate(torch, n: int = 8192, repeats: int = 10) -> float:
    """bf16 TFLOP/s of an n³ product on random data (the arithmetic ceiling the step is compared with)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000 / repeats
    return round(2 * n**3 / seconds / 1e12, 1)


def _adamw8bit_step(torch, device) -> dict:
    """One bitsandbytes AdamW8bit step on a LoRA-sized weight: its state is 8-bit and the weight moves."""
    try:
        import bitsandbytes as bnb
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    weight = torch.nn.Parameter(torch.randn(640, 64, device=device))
    before = weight.detach().clone()
    optimizer = bnb.optim.AdamW8bit([weight], lr=1e-3)
    weight.grad = torch.randn_like(weight)
    optimizer.step()
    state = optimizer.state[weight]
    dtypes = sorted({str(v.dtype) for v in state.values() if hasattr(v, "dtype")})
    return {"ok": bool((weight.detach() != before).all()), "bitsandbytes": bnb.__version__, "state_dtypes": dtypes}
