//! `make bench`, native half: the training step of each preset (MODELS="mlp conv" by default)
//! on the native adapter, timed SAMPLES times (15 by default). Prints `bench native model <m> ms_per_step <median> samples_per_s <n>
//! dispatches_per_step <n> readbacks_per_step <n>`, then the matmul kernels' GFLOP/s (MLP) and
//! each dispatch of the step timed alone, with the products' GFLOP/s. Then the same steps on
//! the CPU path (CPU_MODELS="mlp" by default), on one thread and on every core:
//! `bench native-cpu model <m> threads <n> ms_per_step ...`.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::time::Instant;

    let gpu = pollster::block_on(webvae::gpu::Gpu::new())?;
    let start = Instant::now();
    let models = std::env::var("MODELS").unwrap_or_else(|_| "mlp conv".into());
    // Timed samples per model (a quick look: SAMPLES=1).
    let samples = std::env::var("SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    for model in models.split_whitespace() {
        let report = pollster::block_on(webvae::bench::run(gpu.clone(), model, samples, || start.elapsed().as_secs_f64() * 1000.0))?;
        for line in report.lines("native") {
            println!("{line}");
        }
    }
    let cpu_models = std::env::var("CPU_MODELS").unwrap_or_else(|_| "mlp".into());
    // Each preset on one thread, then on every core (rayon's global pool), side by side.
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    for model in cpu_models.split_whitespace() {
        let run = || webvae::bench::run_cpu(model, samples, || start.elapsed().as_secs_f64() * 1000.0);
        let mut reports = vec![one_thread.install(run)?];
        if rayon::current_num_threads() > 1 {
            reports.push(run()?);
        }
        for line in reports.iter().flat_map(|r| r.lines("native-cpu")) {
            println!("{line}");
        }
    }
    Ok(())
}

// The browser half is e2e/bench.mjs; on wasm32 (e.g. `wasm-pack test` building every target)
// this example is empty.
#[cfg(target_arch = "wasm32")]
fn main() {}
