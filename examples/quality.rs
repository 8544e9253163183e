//! `make quality [MODEL=mlp|conv|{mlp,conv}-gauss-var|{mlp,conv}-categorical]`: trains a preset for 10 epochs
//! on the bundled 9,000 digits, natively on whatever adapter wgpu finds, and reports the test
//! set's negative ELBO (last line) and the importance-weighted estimate of -log p(x) (k = 100;
//! 20 for conv). `mlp` (the default) is the reference configuration (784-400-20, ReLU,
//! Bernoulli on continuous pixels, batch 128, Adam 1e-3, seed 1); `conv` the convolutional
//! preset, trained the same way; `-gauss-var` gives either Kingma & Welling's Gaussian decoder
//! (a mean and a variance per pixel, variance floor 1e-3), whose figures are densities on
//! continuous pixels and so can be negative; `-categorical` 20 categorical latents of 10 classes
//! (Gumbel-softmax, tau 1 to 0.5), whose test figures decode one-hot samples (the discrete ELBO).
//! `DEVICE=cpu` trains on the CPU path instead (`webvae::cpu`), with the same batches and noise.
//! `MODEL=hvae` trains the hierarchy of latents (`model::Graph::hvae`, on either device) for 50
//! epochs at batch 64 (`EPOCHS`, `BATCH`) with Adam, a cosine learning-rate
//! decay from 2e-3 to 1e-4 (`LR`, `LR_FINAL`) and a KL warm-up over 5 epochs (`WARMUP_EPOCHS`),
//! printing each group's KL, then the bound with k = 50.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = pollster::block_on(run()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "wasm32"))]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    use webvae::backend::{Backend, Device};
    use webvae::{data, gpu::Gpu, model::Config};

    let epochs: u32 = std::env::var("EPOCHS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let (train, test) = data::bundled_mnist()?;
    let device = match std::env::var("DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        Ok("gpu") | Ok("") | Err(_) => Device::Gpu(Gpu::new().await?),
        Ok(other) => return Err(format!("unknown DEVICE \"{other}\" (expected gpu or cpu)").into()),
    };
    match &device {
        Device::Gpu(gpu) => println!("adapter {}", gpu.adapter_summary()),
        Device::Cpu => println!("adapter CPU path (f32, matrixmultiply sgemm, {} threads)", rayon::current_num_threads()),
    }
    let model = std::env::var("MODEL").ok().filter(|m| !m.is_empty()).unwrap_or_else(|| "mlp".into());
    if model == "hvae" {
        // 50 epochs at batch 64 fit the 30 minutes on 2 cores.
        return hvae(&device, &train, &test, std::env::var("EPOCHS").ok().and_then(|s| s.parse().ok()).unwrap_or(50)).await;
    }
    let config = Config::preset(&model).ok_or_else(|| format!("unknown MODEL \"{model}\" (expected mlp, conv, either with -gauss-var or -categorical, or hvae)"))?;
    let parameters = webvae::model::Layout::new(&config).len;
    println!("model {model} {} ({parameters} parameters)", config.summary());
    println!("config {}", serde_json::to_string(&config)?);
    let mut trainer = Backend::new(&device, config, &train, &test)?;
    println!("train {} test {} steps_per_epoch {} ({})", train.count, test.count, trainer.steps_per_epoch(), trainer.step_summary());
    let start = std::time::Instant::now();
    let mut test_elbo = trainer.evaluate().await?;
    for epoch in 1..=epochs {
        trainer.train(trainer.steps_per_epoch())?;
        let m = trainer.metrics().await?;
        test_elbo = trainer.evaluate().await?;
        println!(
            "epoch {epoch:2} train_loss {:.2} (recon {:.2} kl {:.2}) test_nelbo {:.2} elapsed {:.1}s",
            m.loss, m.reconstruction, m.kl, test_elbo.nelbo, start.elapsed().as_secs_f64()
        );
    }
    // k = 100 for the MLP; the conv decoder costs ~25x more per sample on a software adapter,
    // so it is bounded with k = 20 (still a tighter bound than the ELBO; IWAE_K overrides).
    let k: usize = std::env::var("IWAE_K").ok().and_then(|s| s.parse().ok()).unwrap_or(if model.starts_with("conv") { 20 } else { 100 });
    let iwae = trainer.importance_weighted_nll(k).await?;
    println!("test_recon {:.2} test_kl {:.2}", test_elbo.reconstruction, test_elbo.kl);
    println!("test_iwae_nll_k{k} {iwae:.2}");
    println!("total_elapsed {:.1}s", start.elapsed().as_secs_f64());
    println!("test_nelbo {:.2}", test_elbo.nelbo);
    Ok(())
}

/// The hierarchical preset, on the CPU path: epochs of training with the per-group KLs, then
/// the test set's -ELBO and importance-weighted bound.
#[cfg(not(target_arch = "wasm32"))]
async fn hvae(device: &webvae::backend::Device, train: &webvae::data::Dataset, test: &webvae::data::Dataset, epochs: u32) -> Result<(), Box<dyn std::error::Error>> {
    use webvae::backend::GraphBackend;
    use webvae::training::Schedule;
    let env = |name: &str, default: f64| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let batch_size = env("BATCH", 64.0) as usize;
    let steps_per_epoch = (train.count / batch_size) as u32;
    let schedule = Schedule {
        batch_size,
        learning_rate: env("LR", 2e-3) as f32,
        final_learning_rate: env("LR_FINAL", 1e-4) as f32,
        total_steps: epochs * steps_per_epoch,
        kl_warmup_steps: (env("WARMUP_EPOCHS", 5.0) * steps_per_epoch as f64) as u32,
        seed: 1,
    };
    let mut trainer = GraphBackend::new(device, &webvae::model::Graph::hvae(), schedule.clone(), train, test)?;
    let layout = trainer.layout();
    println!("model hvae ({} parameters, {} groups: {})", layout.len, layout.groups.len(),
        layout.groups.iter().map(|&i| format!("{} {}", layout.nodes[i].name, layout.nodes[i].output)).collect::<Vec<_>>().join(", "));
    println!("schedule {schedule:?}");
    let threads = if trainer.kind() == "cpu" { format!(" on {} CPU threads", rayon::current_num_threads()) } else { String::new() };
    println!("train {} test {} steps_per_epoch {steps_per_epoch} (device {}{threads})", train.count, test.count, trainer.kind());
    let start = std::time::Instant::now();
    let mut test_nelbo = 0.0;
    let klf = |kl: &[f64]| kl.iter().map(|k| format!("{k:.2}")).collect::<Vec<_>>().join(" ");
    for epoch in 1..=epochs {
        trainer.train(steps_per_epoch)?;
        let m = trainer.metrics().await?;
        let e = trainer.evaluate().await?;
        test_nelbo = e.nelbo;
        println!(
            "epoch {epoch:2} train_loss {:.2} (recon {:.2} kl {}) test_nelbo {:.2} (recon {:.2} kl {}) elapsed {:.1}s",
            m.loss, m.reconstruction, klf(&m.kl), e.nelbo, e.reconstruction, klf(&e.kl), start.elapsed().as_secs_f64()
        );
    }
    let k = env("IWAE_K", 50.0) as usize;
    let iwae = trainer.importance_weighted_nll(k).await?;
    println!("test_iwae_nll_k{k} {iwae:.2}");
    println!("total_elapsed {:.1}s", start.elapsed().as_secs_f64());
    println!("test_nelbo {test_nelbo:.2}");
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn main() {}
