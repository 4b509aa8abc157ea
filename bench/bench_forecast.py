"""Speed of the forecasters on the same real frames, in the same run.

Measures, on this machine:

- seconds per 6-step forecast (one issue time) of pysteps, the shipped RainNet and the
  full-width RainNet (31.4 M parameters; random weights: speed does not depend on them),
  and their ratios to pysteps;
- batched RainNet forecasts per second, and the FLOP/s that achieves as a fraction of the
  machine's measured dense matrix-multiply FLOP/s (model FLOPs counted layer by layer);
- training samples per second of a one-step training step at both widths.

Writes ``docs/bench/forecast.json`` and prints a Markdown table for ``docs/BENCHMARKS.md``.

    python bench/bench_forecast.py [--frames ../shared/data/radar/knmi-w0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def conv_flops(model) -> int:
    """Multiply-adds x 2 of every convolution in one forward pass (other layers are negligible)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            kh, kw, cin, cout = (layer.kernel.shape if isinstance(layer, keras.layers.Conv2D)
                                 else (*layer.kernel.shape[:2], layer.kernel.shape[3], layer.kernel.shape[2]))
            _, h, w, _ = layer.output.shape
            if isinstance(layer, keras.layers.Conv2DTranspose):  # every input pixel scatters a kernel
                _, h, w, _ = layer.input.shape
            total += 2 * h * w * kh * kw * cin * cout
    return int(total)


def matmul_flops_per_s(sizes=(2048, 4096), repeats: int = 5) -> float:
    """Best dense float32 matrix-multiply rate of TensorFlow on this machine (the reference peak)."""
    import tensorflow as tf

    best_rate = 0.0
    for n in sizes:
        a = tf.random.normal((n, n))
        b = tf.random.normal((n, n))
        product = tf.function(lambda a=a, b=b: tf.reduce_sum(tf.matmul(a, b)), autograph=False)
        product().numpy()
        for _ in range(repeats):
            t0 = time.perf_counter()
            product().numpy()
            best_rate = max(best_rate, 2 * n**3 / (time.perf_counter() - t0))
    return best_rate


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (tracing, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=Path, default=REPO.parent / "shared" / "data" / "radar" / "knmi-w0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "forecast.json")
    args = ap.parse_args()

    from nowcast_core.forecasters import get_method
    from nowcast_core.io.sequences import folder_sequences
    from nowcast_core.rainnet import bundled_model_path
    from nowcast_core.rainnet.model import build_rainnet
    from nowcast_core.rainnet.recursive import recursive_forecast
    from nowcast_core.rainnet.train import configure_hardware

    hardware = configure_hardware(threads=None)
    _, inputs, _ = folder_sequences(args.frames)
    batch = np.concatenate([inputs] * (1 + args.batch // max(1, len(inputs))))[: args.batch]
    one = inputs[:1]
    pysteps = get_method("pysteps")
    results = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), **hardware},
               "frames": str(args.frames), "batch": args.batch}
    results["pysteps_s_per_forecast"] = best_time(lambda: pysteps.forecast(one), args.repeats)
    matmul = matmul_flops_per_s()
    results["matmul_gflop_s"] = matmul / 1e9

    models = {}  # recursive networks, timed bare (six steps of the network alone)
    shipped = bundled_model_path()
    bundled = get_method("rainnet", model_path=shipped) if shipped is not None else None
    if bundled is not None and not bundled.config.direct:
        models["shipped"] = bundled.model
    elif bundled is not None:  # a direct network: the whole forecaster (motion, extrapolation, growth, network)
        from nowcast_core.extrapolation import extrapolate_with_growth
        from nowcast_core.rainnet.direct import conditioning_channels, direct_outputs

        config = bundled.config
        conditioning = conditioning_channels(*extrapolate_with_growth(one, 6, config.smoothing_px_per_lead,
                                                                      config.growth_input))
        network = best_time(lambda: direct_outputs(bundled.model, one, conditioning), args.repeats)
        whole = best_time(lambda: bundled.forecast(one), args.repeats)
        results["shipped-direct"] = {"parameters": int(bundled.model.count_params()), "s_per_forecast": whole,
                                     "network_s_per_forecast": network,
                                     "ratio_to_pysteps": whole / results["pysteps_s_per_forecast"]}
    models["full-width"] = build_rainnet(64)
    for name, model in models.items():
        flops_pass = conv_flops(model)
        single = best_time(lambda m=model: recursive_forecast(m, one, 6, 1, jit_compile=False), args.repeats)
        batched = best_time(lambda m=model: recursive_forecast(m, batch, 6, args.batch, jit_compile=False),
                            args.repeats)
        batched_xla = best_time(lambda m=model: recursive_forecast(m, batch, 6, args.batch, jit_compile=True),
                                args.repeats)
        per_s = args.batch / batched
        results[name] = {
            "parameters": int(model.count_params()),
            "gflop_per_forecast": 6 * flops_pass / 1e9,
            "s_per_forecast": single,
            "ratio_to_pysteps": single / results["pysteps_s_per_forecast"],
            "batched_forecasts_per_s": per_s,
            "fraction_of_matmul_flops": per_s * 6 * flops_pass / matmul,
            "xla_speedup_batched": batched / batched_xla,
        }
    results["training"] = train_speed(models, args.repeats)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"machine: {results['machine']['cpu_count']} CPUs, {hardware['device']}, "
          f"dense matmul {results['matmul_gflop_s']:.0f} GFLOP/s")
    print("| forecaster | parameters | s per 6-step forecast | x pysteps | GFLOP per forecast "
          f"| forecasts/s (batch {args.batch}) | share of matmul FLOP/s | XLA speed-up (batched) | training samples/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| pysteps LK + semi-Lagrangian | - | {results['pysteps_s_per_forecast']:.3f} | 1 | - | - | - | - | - |")
    if "shipped-direct" in results:
        r = results["shipped-direct"]
        print(f"| RainNet shipped (direct, whole forecaster; network alone {r['network_s_per_forecast']:.3f} s) "
              f"| {r['parameters'] / 1e6:.2f} M | {r['s_per_forecast']:.3f} | {r['ratio_to_pysteps']:.1f} | - | - | - | - | - |")
    for name in models:
        r = results[name]
        print(f"| RainNet {name} | {r['parameters'] / 1e6:.2f} M | {r['s_per_forecast']:.3f} | {r['ratio_to_pysteps']:.1f} "
              f"| {r['gflop_per_forecast']:.1f} | {r['batched_forecasts_per_s']:.2f} | {r['fraction_of_matmul_flops']:.0%} "
              f"| {r['xla_speedup_batched']:.2f} | {results['training'][name]:.1f} |")
    return 0


def train_speed(models: dict, repeats: int, batch_size: int = 8) -> dict:
    """One-step training samples per second (logcosh, Adam) at each model's width."""
    import keras
    import tensorflow as tf

    out = {}
    for name, model in models.items():
        clone = keras.models.clone_model(model)
        optimizer = keras.optimizers.Adam(1e-4)
        inputs = {i.name: tf.random.normal((batch_size, *i.shape[1:])) for i in clone.inputs}
        target = tf.random.normal((batch_size, *clone.outputs[0].shape[1:]))

        @tf.function
        def step(c=clone, o=optimizer, x=inputs, y=target):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.math.log(tf.cosh(c(x, training=True) - y)))
            grads = tape.gradient(loss, c.trainable_variables)
            o.apply_gradients(zip(grads, c.trainable_variables))
            return loss

        seconds = best_time(lambda s=step: s().numpy(), repeats)
        out[name] = batch_size / seconds
    return out


if __name__ == "__main__":
    raise SystemExit(main())
