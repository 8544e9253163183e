//! The benchmark behind `make bench`: the reference configuration's training step (784-400-20,
//! batch 128) timed on this device, and its largest matmuls timed alone at their real shapes;
//! and the same step on the CPU path. The same code runs natively and in the browser; only the
//! clock is passed in.

use crate::cpu::CpuTrainer;
use crate::data::Dataset;
use crate::gpu::Gpu;
use crate::kernels::{Kernel, Kernels, Records, SingleKernel};
use crate::ops::linear::LinearOp;
use crate::model::Config;
use crate::rng::Rng;
use crate::model::Graph;
use crate::trainer::graph::{graph_flops_per_step, GraphTrainer};
use crate::trainer::{flops_per_step, Trainer};
use crate::training::Schedule;
use crate::training::TrainError;

/// One matmul kernel's timing.
#[derive(Clone, Debug)]
pub struct KernelTiming {
    pub kernel: &'static str,
    /// rows x inner x cols of the product.
    pub shape: (u32, u32, u32),
    pub ms: f64,
    pub gflops: f64,
}

#[derive(Clone, Debug)]
pub struct Report {
    /// The preset timed: "mlp" or "conv".
    pub model: String,
    /// The kernel shape timed ("software" or "hardware"), or None on the CPU path.
    pub shape: Option<&'static str>,
    /// The CPU path's threads (rayon's pool where the step ran), or None on a GPU.
    pub threads: Option<usize>,
    pub adapter: String,
    pub ms_per_step: f64,
    pub samples_per_s: f64,
    /// The step's useful floating-point operations (`trainer::flops_per_step`).
    pub flops_per_step: f64,
    pub dispatches_per_step: usize,
    pub readbacks_per_step: f64,
    pub steps_timed: u32,
    pub kernels: Vec<KernelTiming>,
    /// Each dispatch of one step timed alone: (entry point, milliseconds, GFLOP/s for products).
    pub profile: Vec<(&'static str, f64, Option<f64>)>,
}

impl Report {
    /// The lines `make bench` prints; the first is the one to compare across backends.
    pub fn lines(&self, backend: &str) -> Vec<String> {
        let shape = self.shape.map(|s| format!(" shape {s}")).unwrap_or_default();
        let threads = self.threads.map(|n| format!(" threads {n}")).unwrap_or_default();
        let mut lines = vec![format!(
            "bench {backend} model {}{shape}{threads} ms_per_step {:.1} samples_per_s {:.0} gflop_per_step {:.3} gflops {:.2} dispatches_per_step {} readbacks_per_step {}",
            self.model,
            self.ms_per_step,
            self.samples_per_s,
            self.flops_per_step / 1e9,
            self.flops_per_step / (self.ms_per_step * 1e6),
            self.dispatches_per_step,
            self.readbacks_per_step
        )];
        for k in &self.kernels {
            let (r, i, c) = k.shape;
            lines.push(format!("matmul {backend} {} {r}x{i}x{c} ms {:.2} gflops {:.2}", k.kernel, k.ms, k.gflops));
        }
        if self.profile.is_empty() {
            lines.push(format!("adapter {backend} {} (median of {} timed steps)", self.adapter, self.steps_timed));
            return lines;
        }
        let total: f64 = self.profile.iter().map(|p| p.1).sum();
        let profile: Vec<String> = self
            .profile
            .iter()
            .map(|(k, ms, gflops)| match gflops {
                Some(g) => format!("{k} {ms:.1} ({g:.2} GFLOP/s)"),
                None => format!("{k} {ms:.1}"),
            })
            .collect();
        lines.push(format!("profile {backend} model {} sum_ms {total:.1} : {}", self.model, profile.join(", ")));
        lines.push(format!("adapter {backend} {} (median of {} timed steps)", self.adapter, self.steps_timed));
        lines
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// MNIST-sized random images: the step's cost does not depend on what the pixels show.
fn synthetic(count: usize, seed: u32) -> Dataset {
    let mut rng = Rng::new(seed);
    Dataset {
        count,
        rows: 28,
        cols: 28,
        pixels: (0..count * 784).map(|_| (rng.next_u32() >> 24) as u8).collect(),
        labels: (0..count).map(|i| (i % 10) as u8).collect(),
    }
}

/// Times the training step of the preset `model` ("mlp", the reference, or "conv"; after
/// warm-up, `samples` times, each over enough steps to take ~200 ms), each of its dispatches
/// alone, and for the MLP the three matmul kernels at its largest shape. `now` is a clock in
/// milliseconds.
pub async fn run(gpu: Gpu, model: &str, samples: usize, now: impl Fn() -> f64) -> Result<Report, TrainError> {
    if model == "hvae" {
        return run_hvae(gpu, samples, now).await;
    }
    let config = Config::preset(model).ok_or_else(|| TrainError::Data(format!("unknown model \"{model}\" (expected a preset, or hvae)")))?;
    let kernel_timings = if model == "mlp" { time_matmuls(&gpu, &now).await? } else { Vec::new() };
    let adapter = gpu.adapter_summary();
    let mut trainer = Trainer::new(gpu, config.clone(), &synthetic(9000, 1), &synthetic(1000, 2))?;
    let gpu = trainer.gpu().clone();

    trainer.train(3)?;
    gpu.finish().await?;
    let t0 = now();
    trainer.train(1)?;
    gpu.finish().await?;
    let per_submit = ((200.0 / (now() - t0).max(1.0)).ceil() as u32).clamp(1, 64);

    let readbacks = gpu.readbacks();
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t0 = now();
        trainer.train(per_submit)?;
        gpu.finish().await?;
        times.push((now() - t0) / per_submit as f64);
    }
    let steps_timed = samples as u32 * per_submit;
    let readbacks_per_step = (gpu.readbacks() - readbacks) as f64 / steps_timed as f64;
    // Training must still be sound after all that (and this read is outside the timed loop).
    trainer.metrics().await?;
    let ms_per_step = median(times);
    let dispatches_per_step = trainer.dispatches_per_step();
    let profile = trainer
        .profile_step(3, &now)
        .await?
        .into_iter()
        .map(|(d, ms)| (d.kernel.source().1, ms, (d.flops > 0.0).then(|| d.flops / (ms * 1e6))))
        .collect();
    Ok(Report {
        model: model.to_string(),
        shape: Some(gpu.shape.name()),
        threads: None,
        adapter,
        ms_per_step,
        flops_per_step: flops_per_step(&config),
        samples_per_s: config.batch_size as f64 * 1000.0 / ms_per_step,
        dispatches_per_step,
        readbacks_per_step,
        steps_timed,
        kernels: kernel_timings,
        profile,
    })
}

/// Times the training step of the preset `model` on the CPU path (`cpu::CpuTrainer`), as `run`
/// times it on the GPU: after warm-up, `samples` times, each over enough steps to take ~200 ms;
/// on the threads of the rayon pool it is called in.
pub fn run_cpu(model: &str, samples: usize, now: impl Fn() -> f64) -> Result<Report, TrainError> {
    if model == "hvae" {
        return run_hvae_cpu(samples, now);
    }
    let config = Config::preset(model).ok_or_else(|| TrainError::Data(format!("unknown model \"{model}\" (expected a preset, or hvae)")))?;
    let mut trainer = CpuTrainer::new(config.clone(), &synthetic(9000, 1), &synthetic(1000, 2))?;
    trainer.train(2)?;
    let t0 = now();
    trainer.train(1)?;
    let per_sample = ((200.0 / (now() - t0).max(1.0)).ceil() as u32).clamp(1, 64);
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t0 = now();
        trainer.train(per_sample)?;
        times.push((now() - t0) / per_sample as f64);
    }
    let ms_per_step = median(times);
    let threads = rayon::current_num_threads();
    Ok(Report {
        model: model.to_string(),
        shape: None,
        threads: Some(threads),
        flops_per_step: flops_per_step(&config),
        adapter: format!("CPU, f32 on {threads} thread{} (matrixmultiply sgemm; simd128 in wasm)", if threads == 1 { "" } else { "s" }),
        ms_per_step,
        samples_per_s: config.batch_size as f64 * 1000.0 / ms_per_step,
        dispatches_per_step: 0,
        readbacks_per_step: 0.0,
        steps_timed: samples as u32 * per_sample,
        kernels: Vec::new(),
        profile: Vec::new(),
    })
}

/// The hierarchy (`Graph::hvae`) at batch 128, as the page trains it: its schedule over 50
/// epochs of the bundled digits.
fn hvae_schedule() -> Schedule {
    Schedule { batch_size: 128, learning_rate: 2e-3, final_learning_rate: 1e-4, total_steps: 50 * 70, kl_warmup_steps: 5 * 70, seed: 1 }
}

/// Times the hierarchy's training step on the GPU, as `run` times a preset's (no per-dispatch
/// profile: a step of it is ~60 dispatches, and `make gpu-report` lists their grids).
async fn run_hvae(gpu: Gpu, samples: usize, now: impl Fn() -> f64) -> Result<Report, TrainError> {
    let adapter = gpu.adapter_summary();
    let schedule = hvae_schedule();
    let mut trainer = GraphTrainer::new(gpu, &Graph::hvae(), schedule.clone(), &synthetic(9000, 1), &synthetic(1000, 2))?;
    let gpu = trainer.gpu().clone();
    trainer.train(1)?;
    gpu.finish().await?;
    let readbacks = gpu.readbacks();
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t0 = now();
        trainer.train(1)?;
        gpu.finish().await?;
        times.push(now() - t0);
    }
    let readbacks_per_step = (gpu.readbacks() - readbacks) as f64 / samples as f64;
    trainer.metrics().await?;
    let ms_per_step = median(times);
    Ok(Report {
        model: "hvae".into(),
        shape: Some(gpu.shape.name()),
        threads: None,
        adapter,
        ms_per_step,
        flops_per_step: graph_flops_per_step(trainer.layout(), &schedule),
        samples_per_s: schedule.batch_size as f64 * 1000.0 / ms_per_step,
        dispatches_per_step: trainer.dispatches_per_step(),
        readbacks_per_step,
        steps_timed: samples as u32,
        kernels: Vec::new(),
        profile: Vec::new(),
    })
}

/// The hierarchy's training step on the CPU path, on the threads of the pool it is called in.
fn run_hvae_cpu(samples: usize, now: impl Fn() -> f64) -> Result<Report, TrainError> {
    let schedule = hvae_schedule();
    let mut trainer = crate::cpu::graph::GraphTrainer::new(&Graph::hvae(), schedule.clone(), &synthetic(9000, 1), &synthetic(1000, 2))?;
    trainer.train(1)?;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t0 = now();
        trainer.train(1)?;
        times.push(now() - t0);
    }
    let ms_per_step = median(times);
    let threads = rayon::current_num_threads();
    Ok(Report {
        model: "hvae".into(),
        shape: None,
        threads: Some(threads),
        flops_per_step: graph_flops_per_step(trainer.layout(), &schedule),
        adapter: format!("CPU, f32 on {threads} thread{} (matrixmultiply sgemm; simd128 in wasm)", if threads == 1 { "" } else { "s" }),
        ms_per_step,
        samples_per_s: schedule.batch_size as f64 * 1000.0 / ms_per_step,
        dispatches_per_step: 0,
        readbacks_per_step: 0.0,
        steps_timed: samples as u32,
        kernels: Vec::new(),
        profile: Vec::new(),
    })
}

/// The forward, dX and dW kernels at the reference model's largest shape (128 x 784 x 400:
/// encoder.0 forward and dW, decoder.out dX), each dispatched alone in a loop.
async fn time_matmuls(gpu: &Gpu, now: &impl Fn() -> f64) -> Result<Vec<KernelTiming>, TrainError> {
    let kernels = Kernels::new(&gpu.device, gpu.shape);
    let mut rng = Rng::new(5);
    let mut out = Vec::new();
    for (kernel, (rows, inner, cols)) in [
        (Kernel::LinearForward, (128, 784, 400)),
        (Kernel::LinearBackwardInput, (128, 400, 784)),
        (Kernel::LinearBackwardWeight, (128, 784, 400)),
    ] {
        let (r, i, c) = (rows as usize, inner as usize, cols as usize);
        let (x, w, b, dy) = (rng.vec(r * i, 0.0, 1.0), rng.vec(c * i, -0.05, 0.05), rng.vec(c, -0.05, 0.05), rng.vec(r * c, -1.0, 1.0));
        let (op, mut scratch) = LinearOp::standalone(r, i, 1, &x, &w, &b, &dy);
        let mut records = Records::new(gpu.shape).with_parts_in(&mut scratch);
        crate::ops::linear::record_product(&mut records, kernel, op, None);
        let single = SingleKernel::with_records(gpu, &kernels, &records, &scratch, 0);
        single.submit(gpu, &kernels, 2);
        gpu.finish().await?;
        let repeats = 5;
        let mut times = Vec::new();
        for _ in 0..5 {
            let t0 = now();
            single.submit(gpu, &kernels, repeats);
            gpu.finish().await?;
            times.push((now() - t0) / repeats as f64);
        }
        let ms = median(times);
        let flops = 2.0 * (r * i * c) as f64;
        let name = records.dispatches.iter().find(|d| d.flops > 0.0).expect("a product has a dispatch").kernel.source().1;
        out.push(KernelTiming { kernel: name, shape: (rows, inner, cols), ms, gflops: flops / (ms * 1e6) });
    }
    Ok(out)
}
