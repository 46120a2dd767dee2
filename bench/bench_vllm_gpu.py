"""VLLMEngine throughput vs vLLM's own ``LLM.generate`` on the same prompts (GPU only).

Both paths share one ``vllm.LLM`` on the embedded model (SmolLM2-135M-Instruct,
or ``--model``): the baseline calls ``LLM.generate`` on the token prompts the
engine renders, with the same ``SamplingParams`` (same seeds, so the same
samples); the engine path is ``VLLMEngine.generate`` (chat template rendering,
stepping the engine, yielding each request as it finishes). Prints generated
tokens/s for both and the ratio; the target is >= 0.95. Exits 0 with a SKIP line
where there is no GPU or no vLLM, 1 when the ratio is below target.

    python bench/bench_vllm_gpu.py [--requests 512 --n 4 --max-tokens 256 --model embedded]
"""

from __future__ import annotations

import argparse
import sys
import time

TARGET = 0.95


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--requests", type=int, default=512)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    a = p.parse_args()

    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        print("SKIP: no CUDA GPU here; run bench/bench_vllm_gpu.py on a GPU machine with vLLM installed")
        return 0
    try:
        import vllm  # noqa: F401
    except ImportError:
        print("SKIP: vLLM is not installed: pip install 'fineproofs[vllm]'")
        return 0

    from fineproofs.engines.base import GenerationRequest, SamplingParams
    from fineproofs.engines.vllm_engine import VLLMEngine, _final_only, sampling_params_for

    engine = VLLMEngine(a.model, gpu_memory_utilization=a.gpu_memory_utilization, seed=0)
    sp = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=a.max_tokens, seed=0)
    reqs = [
        GenerationRequest(
            [{"role": "user", "content": f"Prove that {i}^2 + {i} is even, then show {i + 1} divides {i * (i + 1)}."}],
            n=a.n,
            sampling=sp,
            seeds=[1000 * i + j for j in range(a.n)],
        )
        for i in range(a.requests)
    ]
    prompts = [{"prompt_token_ids": engine.prompt_ids(r)} for r in reqs]

    def baseline() -> tuple[float, int]:
        params = [sampling_params_for(r) for r in reqs]
        for q in params:
            _final_only(q)
        t0 = time.perf_counter()
        outs = engine.llm.generate(prompts, params, use_tqdm=False)
        wall = time.perf_counter() - t0
        return wall, sum(len(o.token_ids) for out in outs for o in out.outputs)

    def ours() -> tuple[float, int]:
        t0 = time.perf_counter()
        tokens = sum(c.completion_tokens for _, cs in engine.generate(reqs) for c in cs)
        return time.perf_counter() - t0, tokens

    # warm up (CUDA graphs, allocator) on a slice, then alternate
    list(engine.generate(reqs[:32]))
    best = {"LLM.generate": 0.0, "VLLMEngine": 0.0}
    for r in range(a.repeats):
        for name, fn in (("LLM.generate", baseline), ("VLLMEngine", ours)):
            wall, tokens = fn()
            tps = tokens / wall
            best[name] = max(best[name], tps)
            print(f"run {r} {name:13s} {tokens:8d} tokens in {wall:7.2f}s = {tps:10.1f} tok/s")
    ratio = best["VLLMEngine"] / best["LLM.generate"]
    print(f"VLLMEngine / LLM.generate throughput = {ratio:.3f} (target >= {TARGET})")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
