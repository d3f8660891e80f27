"""Translation benchmark: the lab's Transformer against Hugging Face's MarianMTModel of the same shape.

    (a) training throughput, target tokens/s, on identical synthetic batches (bf16 autocast on CUDA)
    (b) beam-search throughput, sentences/s, beam 5, every output forced to the same length; on CUDA the
        lab's search replays a captured CUDA graph per step (its eager steps are timed too)
    (c) test BLEU on the Ding split after training GRU + Bahdanau, LSTM + Luong, the Transformer and a
        Marian model from scratch, each for the same wall-clock budget under the lab's Trainer

On a GPU the defaults are the Transformer-base shape (d_model 512, 6+6 layers, 8 heads, FFN 2048, vocabulary 16k)
and 600 s of training per model for (c). On a CPU they are a tiny budget that finishes in a few minutes (d_model 64,
2+2 layers, vocabulary 2,000, 3-s timings, 30 s of training per model); every flag overrides its default:

    python bench/translation.py --device cpu --json
    python bench/translation.py --device cuda --skip-bleu --batch-size 256 --source-length 64 --target-length 64
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from anywhere

from lab.devices import GraphCaptureWarning, autocast, resolve_device  # noqa: E402
from nlp.decoding import beam_search  # noqa: E402
from nlp.models import TRANSLATION_MODELS, TranslationModelEntry, Transformer, sequence_loss  # noqa: E402
from nlp.models.base import Seq2SeqModel, Tensors  # noqa: E402
from nlp.tokenization import BOS_ID, EOS_ID, PAD_ID  # noqa: E402

RNN_CONFIGS = {"seq2seq_gru_bahdanau": "nlp/translate_gru_attention", "seq2seq_lstm_luong_general": "nlp/translate_lstm_luong"}
TRANSFORMER_CONFIG = "nlp/translate_transformer"


def marian_config(vocab_size: int, target_vocab_size: int, d_model: int, heads: int, encoder_layers: int,
                  decoder_layers: int, ffn_dim: int, dropout: float, max_positions: int) -> Any:
    """A MarianConfig matching the lab's Transformer: ReLU FFN, √d embedding scale, the lab's special ids."""
    from transformers import MarianConfig

    return MarianConfig(
        vocab_size=vocab_size, decoder_vocab_size=target_vocab_size, d_model=d_model,
        encoder_layers=encoder_layers, decoder_layers=decoder_layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn_dim, decoder_ffn_dim=ffn_dim, activation_function="relu",
        dropout=dropout, attention_dropout=dropout, activation_dropout=dropout,
        max_position_embeddings=max_positions, scale_embedding=True,
        share_encoder_decoder_embeddings=vocab_size == target_vocab_size,
        pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID, decoder_start_token_id=BOS_ID,
        forced_eos_token_id=None,
    )


class MarianSeq2Seq(Seq2SeqModel):
    """MarianMTModel behind the lab's seq2seq interface, so the Trainer and the lab's decoding can run it.

    Its decode step re-reads the whole prefix (no cache); it serves BLEU in (c), never the timings."""

    def __init__(self, source_vocab_size: int, target_vocab_size: int, d_model: int = 512, heads: int = 8,
                 encoder_layers: int = 6, decoder_layers: int = 6, ffn_dim: int = 2048, dropout: float = 0.1,
                 max_positions: int = 256) -> None:
        super().__init__()
        from transformers import MarianMTModel

        self.marian = MarianMTModel(marian_config(source_vocab_size, target_vocab_size, d_model, heads,
                                                  encoder_layers, decoder_layers, ffn_dim, dropout, max_positions))
        self.max_positions = max_positions

    def forward(self, source: torch.Tensor, source_mask: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        return self.marian(input_ids=source, attention_mask=source_mask.long(), decoder_input_ids=target_in).logits

    def encode(self, source: torch.Tensor, source_mask: torch.Tensor) -> Tensors:
        encoded = self.marian.get_encoder()(input_ids=source, attention_mask=source_mask.long()).last_hidden_state
        return {"encoded": encoded, "source_mask": source_mask}

    def init_state(self, memory: Tensors, capacity: int | None = None) -> Tensors:
        return {"prefix": memory["source_mask"].new_zeros(memory["source_mask"].size(0), 0, dtype=torch.long)}

    def decode_step(self, previous: torch.Tensor, memory: Tensors, state: Tensors, need_attention: bool = False
                    ) -> tuple[torch.Tensor, Tensors, torch.Tensor | None]:
        from transformers.modeling_outputs import BaseModelOutput

        prefix = torch.cat([state["prefix"], previous.unsqueeze(1)], dim=1)
        logits = self.marian(encoder_outputs=BaseModelOutput(last_hidden_state=memory["encoded"]),
                             attention_mask=memory["source_mask"].long(), decoder_input_ids=prefix,
                             use_cache=False).logits
        return logits[:, -1], {"prefix": prefix}, None


# --- (a) and (b): throughput on synthetic batches ---------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run_once: Callable[[], int], device: torch.device, seconds: float, warmup: int = 2) -> float:
    """Units per second of `run_once` (which returns how many units it processed), measured for ≥ `seconds`."""
    for _ in range(warmup):
        run_once()
    synchronize(device)
    units, start = 0, time.perf_counter()
    while True:
        units += run_once()
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return units / elapsed


def synthetic_batch(args: argparse.Namespace, batch_size: int, device: torch.device, seed: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random full-length sentences (no padding): source, its mask, decoder input and decoder target."""
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(4, args.vocab, (batch_size, args.source_length), generator=generator)
    target = torch.randint(4, args.vocab, (batch_size, args.target_length + 1), generator=generator)
    target[:, 0] = BOS_ID
    return (source.to(device), torch.ones_like(source, dtype=torch.bool).to(device),
            target[:, :-1].to(device), target[:, 1:].to(device))


def build_pair(args: argparse.Namespace, device: torch.device) -> tuple[Transformer, torch.nn.Module]:
    """The lab's Transformer and MarianMTModel with the same shape, one shared and tied embedding table each."""
    from transformers import MarianMTModel

    max_positions = max(args.source_length, args.target_length, args.decode_length) + 2
    torch.manual_seed(0)
    lab_model = Transformer(args.vocab, args.vocab, d_model=args.d_model, heads=args.heads, encoder_layers=args.layers,
                            decoder_layers=args.layers, ffn_dim=args.ffn, dropout=0.1, max_positions=max_positions,
                            share_source_embedding=True)
    marian = MarianMTModel(marian_config(args.vocab, args.vocab, args.d_model, args.heads, args.layers, args.layers,
                                         args.ffn, 0.1, max_positions))
    return lab_model.to(device), marian.to(device)


def training_throughput(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    lab_model, marian = build_pair(args, device)
    source, mask, target_in, target_out = synthetic_batch(args, args.batch_size, device, seed=1)
    bf16 = device.type == "cuda"

    def trainer_step(model: torch.nn.Module, logits_of: Callable[[], torch.Tensor]) -> Callable[[], int]:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> int:
            with autocast(device, bf16):
                loss = sequence_loss(logits_of(), target_out, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return target_out.numel()

        return step

    lab_model.train(), marian.train()
    lab_rate = timed(trainer_step(lab_model, lambda: lab_model(source, mask, target_in)), device, args.measure_seconds)
    marian_rate = timed(trainer_step(marian, lambda: marian(input_ids=source, attention_mask=mask.long(),
                                                             decoder_input_ids=target_in).logits),
                        device, args.measure_seconds)
    return {"lab_tokens_per_s": lab_rate, "marian_tokens_per_s": marian_rate, "ratio": lab_rate / marian_rate,
            "lab_parameters": sum(p.numel() for p in lab_model.parameters()),
            "marian_parameters": sum(p.numel() for p in marian.parameters())}


def beam_searches(args: argparse.Namespace, device: torch.device) -> dict[str, Callable[[], int]]:
    """One beam search of the same synthetic batch by each model, every hypothesis forced to the same length;
    each returns the number of sentences it translated. On CUDA the lab's search runs twice: as it does by
    default (each step a CUDA-graph replay, capture included in the time) and with every step eager."""
    lab_model, marian = build_pair(args, device)
    lab_model.eval(), marian.eval()
    source, mask, _, _ = synthetic_batch(args, args.decode_batch, device, seed=2)
    length, beams, bf16 = args.decode_length, args.beam, device.type == "cuda"

    def lab_search(cuda_graph: bool) -> Callable[[], int]:
        @torch.no_grad()
        def search() -> int:
            with autocast(device, bf16), warnings.catch_warnings():
                warnings.simplefilter("error", GraphCaptureWarning)  # never time eager steps as graph replays
                beam_search(lab_model, source, mask, beam_size=beams, max_length=length, min_length=length,
                            cuda_graph=cuda_graph)
            return source.size(0)

        return search

    @torch.no_grad()
    def marian_search() -> int:
        with autocast(device, bf16):
            marian.generate(input_ids=source, attention_mask=mask.long(), num_beams=beams, do_sample=False,
                            max_new_tokens=length, min_new_tokens=length, early_stopping=False)
        return source.size(0)

    searches = {"lab": lab_search(cuda_graph=True), "marian": marian_search}
    if device.type == "cuda":
        searches["lab_eager"] = lab_search(cuda_graph=False)
    return searches


def beam_throughput(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    rates = {name: timed(search, device, args.measure_seconds, warmup=1)
             for name, search in beam_searches(args, device).items()}
    report = {f"{name}_sentences_per_s": rate for name, rate in rates.items()}
    report["ratio"] = rates["lab"] / rates["marian"]
    if "lab_eager" in rates:
        report["eager_ratio"] = rates["lab_eager"] / rates["marian"]
    return report


def beam_profile(args: argparse.Namespace, device: torch.device, top: int = 8) -> dict[str, Any]:
    """Where one beam search's time goes, per decoding step, for each model (torch.profiler).

    On CUDA: the kernels launched (copies and memsets apart) and the GPU's busy time, to set against the
    unprofiled wall time of a step (a GPU busy for a small part of it means the host's launches bound the
    search); the lab's search is profiled with eager steps only, since the profiler's CUDA tracing and CUDA
    graphs do not mix reliably. On a CPU: the operators called from Python (nested ones not counted again)
    and their inclusive time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    on_cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    report = {}
    searches = beam_searches(args, device)
    if on_cuda:
        del searches["lab"]
    for name, search in searches.items():
        search()  # warm-up: kernels chosen, caches filled
        synchronize(device)
        started = time.perf_counter()
        search()
        synchronize(device)
        wall = time.perf_counter() - started
        with profile(activities=activities) as profiler:
            search()
            synchronize(device)
        if on_cuda:
            events = [(e.key, e.count, e.self_device_time_total) for e in profiler.key_averages()
                      if e.device_type == DeviceType.CUDA]
            if not events:
                raise RuntimeError("the profiler recorded no CUDA activity (is CUPTI available?)")
        else:
            events = [(e.name, 1, e.cpu_time_total) for e in profiler.events()
                      if e.name.startswith("aten::") and not _inside_aten(e)]
        report[name] = summarize_profile(events, args.decode_length, wall, on_cuda, top)
    return report


def summarize_profile(events: list[tuple[str, int, float]], steps: int, wall_s: float, on_cuda: bool,
                      top: int = 8) -> dict[str, Any]:
    """Per-step figures from (name, calls, microseconds) events: how many kernels (CUDA; memory copies and
    memsets are reported apart) or operators (CPU), their summed time, and the costliest few."""
    totals: dict[str, list[float]] = {}
    for key, count, microseconds in events:
        total = totals.setdefault(key, [0, 0.0])
        total[0] += count
        total[1] += microseconds
    memory = {key for key in totals if on_cuda and key.startswith(("Memcpy", "Memset"))}
    work = sorted(((key, count, t) for key, (count, t) in totals.items() if key not in memory), key=lambda e: -e[2])
    unit = "kernels" if on_cuda else "operators"
    summary = {
        "wall_ms_per_step": 1e3 * wall_s / steps,
        f"{unit}_per_step": sum(count for _, count, _ in work) / steps,
        ("gpu_busy_ms_per_step" if on_cuda else "operator_ms_per_step"): sum(t for *_, t in work) / 1e3 / steps,
        "top": [{"name": key[:80], "calls_per_step": round(count / steps, 2), "ms_per_step": round(t / 1e3 / steps, 4)}
                for key, count, t in work[:top]],
    }
    if on_cuda:
        summary["copies_and_memsets_per_step"] = sum(totals[key][0] for key in memory) / steps
        summary["copy_ms_per_step"] = sum(totals[key][1] for key in memory) / 1e3 / steps
    return summary


def _inside_aten(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False


# --- (c): BLEU after equal wall-clock training ------------------------------------------------------------------


def train_for_budget(config_name: str, overrides: list[str], seconds: float) -> dict[str, Any]:
    from lab.config import load_config
    from lab.trainer import Trainer, time_limit

    config = load_config(config_name, overrides)
    trainer = Trainer(config, run_dir=None)  # builds the data, tokenizer and model before the clock starts
    trainer.callbacks.append(time_limit(seconds, f"wall-clock budget of {seconds:g} s used"))
    started = time.perf_counter()
    result = trainer.fit()
    evaluation = result["eval"]
    scores = {"test_bleu": evaluation["eval/test_bleu"], "test_chrf": evaluation["eval/test_chrf"],
              "valid_bleu": evaluation["eval/valid_bleu"], "valid_loss": evaluation["eval/valid_loss"],
              "steps": result["step"], "train_and_eval_seconds": round(time.perf_counter() - started, 1),
              "bleu_signature": trainer.task.last_scores.bleu_signature}
    if isinstance(trainer.task.model, MarianSeq2Seq):
        scores["test_bleu_with_generate"] = generate_bleu(trainer.task)
    return scores


@torch.no_grad()
def generate_bleu(task: Any) -> float:
    """Test BLEU of a Marian run decoded by Hugging Face's own `generate`: a check on the adapter's decoding."""
    from nlp.metrics import score_translations

    marian, tokenizers, decoding = task.model.marian.eval(), task.tokenizers, task.config.decoding
    pairs = task.pairs()["test"]
    hypotheses = []
    for start in range(0, len(pairs), 64):
        sources = [tokenizers.source.encode(s)[: task.config.data.max_tokens - 1] + [EOS_ID] for s, _ in pairs[start:start + 64]]
        width = max(map(len, sources))
        source = torch.tensor([ids + [PAD_ID] * (width - len(ids)) for ids in sources], device=task.device)
        with autocast(task.device, task.config.model.bf16):
            output = marian.generate(input_ids=source, attention_mask=(source != PAD_ID).long(),
                                     num_beams=decoding.beam_size, length_penalty=decoding.length_penalty,
                                     max_new_tokens=min(int(width * decoding.max_length_ratio) + decoding.max_length_extra,
                                                        marian.config.max_position_embeddings - 1))
        hypotheses += [tokenizers.target.decode(ids[1:]) for ids in output.tolist()]  # drop the start token
    return score_translations(hypotheses, [t for _, t in pairs]).bleu


def bleu_after_budget(args: argparse.Namespace) -> dict[str, Any]:
    """Each model trains for `budget_seconds` on the same Ding split with the same tokenizer settings."""
    if "hf_marian" not in TRANSLATION_MODELS:
        TRANSLATION_MODELS.register("hf_marian", help="MarianMTModel (benchmark only)")(
            TranslationModelEntry("hf_marian", MarianSeq2Seq))
    from lab.config import load_config

    common = [f"device={args.device}", "trainer.max_steps=1000000000", "trainer.eval_every=null",
              "trainer.checkpoint_every=null", "trainer.progress=false", "tracking.mode=disabled",
              "optim.schedule=constant"]  # no schedule can know how many steps a time budget allows
    if resolve_device(args.device).type == "cuda":
        common.append("model.bf16=true")
    if args.eval_sentences:
        common.append(f"evaluation.max_sentences={args.eval_sentences}")
    if args.ding_path:
        common.append(f"data.ding_path={args.ding_path}")
    transformer_options = load_config(TRANSFORMER_CONFIG).model.options
    marian_options = {k: v for k, v in transformer_options.items() if k in inspect.signature(MarianSeq2Seq).parameters}
    runs = {name: (config, []) for name, config in RNN_CONFIGS.items()}
    runs["seq2seq_transformer"] = (TRANSFORMER_CONFIG, [])
    runs["hf_marian"] = (TRANSFORMER_CONFIG, ["model.name=hf_marian", f"model.options={json.dumps(marian_options)}"])
    results = {}
    for name, (config, overrides) in runs.items():
        if args.models and name not in args.models:
            continue
        print(f"(c) training {name} for {args.budget_seconds:g} s …", file=sys.stderr, flush=True)
        results[name] = train_for_budget(config, common + overrides, args.budget_seconds)
    return results


# (GPU, other devices): Transformer-base and real budgets where the targets are measured, seconds elsewhere.
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "budget_seconds": (600.0, 30.0), "measure_seconds": (10.0, 3.0), "eval_sentences": (None, 100),
    "d_model": (512, 64), "layers": (6, 2), "heads": (8, 4), "ffn": (2048, 128), "vocab": (16000, 2000),
    "batch_size": (64, 16), "source_length": (32, 16), "target_length": (32, 16), "beam": (5, 5),
    "decode_batch": (32, 8), "decode_length": (32, 12),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON dict with every figure and ratio")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--budget-seconds", type=float, help="(c) training time per model (600 GPU, 30 CPU)")
    parser.add_argument("--measure-seconds", type=float, help="(a), (b) timing per model (10 GPU, 3 CPU)")
    parser.add_argument("--skip-bleu", action="store_true", help="skip (c)")
    parser.add_argument("--skip-throughput", action="store_true", help="skip (a) and (b)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one beam search of each model: kernels (CUDA) or operators per step")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="(c) only these of: "
                        + ", ".join([*RNN_CONFIGS, "seq2seq_transformer", "hf_marian"]))
    parser.add_argument("--ding-path", metavar="FILE", help="(c) the Ding dictionary, where it is not at "
                        "/usr/share/trans/de-en (a copy carried to a machine without Debian's trans-de-en)")
    parser.add_argument("--eval-sentences", type=int,
                        help="(c) translate at most this many valid sentences at each evaluation (CPU: 100)")
    shape = parser.add_argument_group("model and batch shape for (a) and (b); defaults GPU / CPU")
    for flag, help_text in (("--d-model", "512 / 64"), ("--layers", "encoder layers = decoder layers: 6 / 2"),
                            ("--heads", "8 / 4"), ("--ffn", "2048 / 128"), ("--vocab", "16000 / 2000"),
                            ("--batch-size", "64 / 16"), ("--source-length", "32 / 16"),
                            ("--target-length", "32 / 16"), ("--beam", "5 / 5"), ("--decode-batch", "32 / 8"),
                            ("--decode-length", "tokens every hypothesis generates: 32 / 12")):
        shape.add_argument(flag, type=int, help=help_text)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    for name, (on_gpu, on_cpu) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, on_gpu if device.type == "cuda" else on_cpu)

    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "torch": torch.__version__, "bf16_autocast": device.type == "cuda",
        "shape": {k: getattr(args, k) for k in ("d_model", "layers", "heads", "ffn", "vocab", "batch_size",
                                                "source_length", "target_length", "beam", "decode_batch",
                                                "decode_length")},
    }
    if args.profile and device.type == "cuda":
        # The profiler's CUDA tracing must start once before any CUDA graph is captured (the lab's beam
        # search captures one), or a later profile can fail.
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]):
            pass
    if not args.skip_throughput:
        print("(a) training throughput …", file=sys.stderr, flush=True)
        report["training"] = training_throughput(args, device)
        print("(b) beam-search throughput …", file=sys.stderr, flush=True)
        report["beam_search"] = beam_throughput(args, device)
    if args.profile:
        print("(b) profiling one beam search of each model …", file=sys.stderr, flush=True)
        report["beam_profile"] = beam_profile(args, device)
    if not args.skip_bleu:
        report["bleu"] = bleu_after_budget(args)

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"device {report['device']}, shape {report['shape']}")
    if "training" in report:
        training, beam = report["training"], report["beam_search"]
        print(f"(a) training  lab {training['lab_tokens_per_s']:,.0f} tok/s  marian "
              f"{training['marian_tokens_per_s']:,.0f} tok/s  ratio {training['ratio']:.2f}  "
              f"(params {training['lab_parameters']:,} vs {training['marian_parameters']:,})")
        print(f"(b) beam {args.beam}    lab {beam['lab_sentences_per_s']:,.1f} sent/s  marian "
              f"{beam['marian_sentences_per_s']:,.1f} sent/s  ratio {beam['ratio']:.2f}"
              + (f"  (lab eager steps {beam['lab_eager_sentences_per_s']:,.1f} sent/s, ratio {beam['eager_ratio']:.2f})"
                 if "lab_eager_sentences_per_s" in beam else ""))
    for name, profiled in report.get("beam_profile", {}).items():
        counts = {k: v for k, v in profiled.items() if k != "top"}
        print(f"(b) profile {name}: " + ", ".join(f"{k} {v:,.2f}" for k, v in counts.items()))
        for op in profiled["top"]:
            print(f"      {op['ms_per_step']:8.3f} ms  {op['calls_per_step']:7.2f}×  {op['name']}")
    for name, scores in report.get("bleu", {}).items():
        print(f"(c) {name:<28} test BLEU {scores['test_bleu']:5.2f}  chrF {scores['test_chrf']:5.2f}  "
              f"after {scores['steps']:,} steps"
              + (f"  (BLEU {scores['test_bleu_with_generate']:.2f} decoded by generate)"
                 if "test_bleu_with_generate" in scores else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
