//! The trainer's API natively: evaluation and the importance-weighted bound, encode, decode,
//! reconstruct, prior samples, interpolation, configuration errors, divergence and a lost device.
//! What both backends offer is tested on both: the GPU trainer (lavapipe here) and the CPU path.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use webvae::backend::{Backend, Device};
use webvae::gpu::{Gpu, GpuError};
use webvae::model::{Config, LatentType, Likelihood};
use webvae::latent::{interpolate, Encoding};
use webvae::trainer::Trainer;
use webvae::training::TrainError;

fn trainer(config: Config) -> Trainer {
    let (train, test) = common::small_mnist(512);
    let gpu = pollster::block_on(common::gpu_or_fail(|s| println!("{s}")));
    Trainer::new(gpu, config, &train, &test).unwrap_or_else(|e| panic!("{e}"))
}

/// The GPU and the CPU.
fn devices() -> [Device; 2] {
    [Device::Gpu(pollster::block_on(common::gpu_or_fail(|s| println!("{s}")))), Device::Cpu]
}

fn trainer_on(device: &Device, config: Config) -> Backend {
    let (train, test) = common::small_mnist(512);
    Backend::new(device, config, &train, &test).unwrap_or_else(|e| panic!("{e}"))
}

fn small() -> Config {
    Config { batch_size: 32, learning_rate: 3e-3, ..Config::mlp(784, &[64], 4) }
}

/// A browser's GPU process compiles every pipeline made before its next submission runs, so a
/// trainer builds them as its passes first need them: a new one has none, the first samples need
/// only the decoder's, `prepare` builds what training and evaluation need (training then builds
/// no more), and in both kernel shapes every pipeline there is builds on this device.
#[test]
fn pipelines_are_built_as_passes_need_them() {
    use webvae::kernels::{KernelShape, Kernels};
    for config in [small(), Config { batch_size: 32, ..Config::conv() }] {
        let mut t = trainer(config);
        assert_eq!(t.pipelines_built(), 0, "a new trainer builds no pipeline");
        pollster::block_on(async {
            t.decode(&vec![0.0; 2 * t.config().latent]).await.unwrap();
            let decode = t.pipelines_built();
            t.prepare().await.unwrap();
            let prepared = t.pipelines_built();
            t.train(2).unwrap();
            t.metrics().await.unwrap();
            t.evaluate().await.unwrap();
            println!("{}: decode builds {decode} pipelines, prepare {prepared} in all", t.config().summary());
            assert!((1..=4).contains(&decode), "decoding built {decode} pipelines");
            assert!(prepared > decode + 4, "prepare built {prepared} pipelines");
            assert_eq!(t.pipelines_built(), prepared, "training and evaluating built pipelines prepare had not");
        });
    }
    let gpu = pollster::block_on(common::gpu_or_fail(|s| println!("{s}")));
    for shape in KernelShape::ALL {
        let kernels = Kernels::new(&gpu.device, shape);
        kernels.prepare_all();
        assert_eq!(kernels.built(), shape.kernels().count());
        pollster::block_on(gpu.finish()).unwrap_or_else(|e| panic!("{} shape: {e}", shape.name()));
    }
}

#[test]
fn training_improves_the_test_elbo_and_iwae_is_tighter() {
    for device in devices() {
        let mut t = trainer_on(&device, small());
        pollster::block_on(async {
            let before = t.evaluate().await.unwrap();
            t.train(4 * t.steps_per_epoch()).unwrap();
            let m = t.metrics().await.unwrap();
            let after = t.evaluate().await.unwrap();
            let again = t.evaluate().await.unwrap();
            let iwae = t.importance_weighted_nll(50).await.unwrap();
            println!("{}: test nelbo {:.2} -> {:.2}; iwae(50) {:.2}; train loss {:.2}", device.kind(), before.nelbo, after.nelbo, iwae, m.loss);
            assert_eq!(m.steps, 4 * t.steps_per_epoch());
            assert!(after.nelbo < before.nelbo - 20.0, "{before:?} -> {after:?}");
            assert!((after.nelbo - after.reconstruction - after.kl).abs() < 1e-6);
            assert_eq!(after, again, "evaluation uses fixed noise");
            assert!(iwae < after.nelbo && iwae > after.nelbo - 30.0, "iwae {iwae} vs nelbo {}", after.nelbo);
        });
    }
}

#[test]
fn encode_decode_reconstruct_sample_and_interpolate() {
    for device in devices() {
        let mut t = trainer_on(&device, small());
        let (_, test) = common::small_mnist(512);
        pollster::block_on(async {
            t.train(2 * t.steps_per_epoch()).unwrap();
            let x: Vec<f32> = (0..3).flat_map(|i| test.image(i)).collect();
            let Encoding::Gaussian { mu, logvar } = t.encode(&x).await.unwrap() else { panic!("Gaussian latents") };
            assert_eq!((mu.len(), logvar.len()), (12, 12));
            let recon = t.reconstruct(&x).await.unwrap();
            let decoded = t.decode(&mu).await.unwrap();
            assert_eq!(recon.len(), 3 * 784);
            common::assert_close("reconstruct = decode(mu)", &recon, &decoded, 1e-5, 1e-6);
            assert!(recon.iter().all(|&p| (0.0..=1.0).contains(&p)));
            // A reconstruction is closer to its own digit than to another one.
            let dist = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>();
            assert!(dist(&recon[..784], &x[..784]) < dist(&recon[..784], &x[784..1568]));

            let s1 = t.decode(&t.prior_codes(8, 42)).await.unwrap();
            let s2 = t.decode(&t.prior_codes(8, 42)).await.unwrap();
            let s3 = t.decode(&t.prior_codes(8, 43)).await.unwrap();
            assert_eq!(s1, s2);
            assert_ne!(s1, s3);

            let path = interpolate(&mu[..4], &mu[4..8], 5, false);
            assert_eq!(path.len(), 5);
            common::assert_close("lerp starts at a", &path[0], &mu[..4], 0.0, 1e-6);
            common::assert_close("lerp ends at b", &path[4], &mu[4..8], 0.0, 1e-6);
            let arc = interpolate(&mu[..4], &mu[4..8], 5, true);
            common::assert_close("slerp ends at b", &arc[4], &mu[4..8], 1e-5, 1e-5);
            let strip = t.decode(&path.concat()).await.unwrap();
            common::assert_close("strip endpoints are reconstructions", &strip[..784], &recon[..784], 1e-5, 1e-6);

            assert!(matches!(t.decode(&[0.0; 5]).await, Err(TrainError::Data(_))));
        });
    }
}

/// The standard deviations the σ views show: the learned ones at or above the floor and large
/// where the model is unsure; the Bernoulli's sqrt(p (1 - p)) from the same outputs as the means.
#[test]
fn per_pixel_standard_deviations() {
    for device in devices() {
        let (_, test) = common::small_mnist(512);
        let x: Vec<f32> = (0..3).flat_map(|i| test.image(i)).collect();
        pollster::block_on(async {
            let mut t = trainer_on(&device, small().with_likelihood(Likelihood::gaussian_var()));
            t.train(2 * t.steps_per_epoch()).unwrap();
            let mu = t.encode(&x).await.unwrap().code().to_vec();
            let (mean, std) = (t.decode(&mu).await.unwrap(), t.decode_std(&mu).await.unwrap());
            common::assert_close("reconstruct_std = decode_std(mu)", &t.reconstruct_std(&x).await.unwrap(), &std, 1e-5, 1e-6);
            assert_eq!(std.len(), 3 * 784);
            let floor = 1e-3f32.sqrt();
            assert!(std.iter().all(|&s| s >= floor * (1.0 - 1e-5) && s.is_finite()), "a σ below the floor's {floor}");
            // Pixels whose mean is near 0 or 1 (background, stroke centres) are surer than those in
            // between (stroke edges).
            let average = |keep: &dyn Fn(f32) -> bool| {
                let v: Vec<f32> = mean.iter().zip(&std).filter(|(m, _)| keep(**m)).map(|(_, s)| *s).collect();
                v.iter().sum::<f32>() / v.len().max(1) as f32
            };
            let (sure, unsure) = (average(&|m| !(0.05..=0.95).contains(&m)), average(&|m| (0.3..=0.7).contains(&m)));
            println!("mean σ: {sure:.3} where the mean is near 0 or 1, {unsure:.3} where it is 0.3..0.7");
            assert!(unsure > 2.0 * sure, "σ is not larger at the strokes' edges: {unsure} vs {sure}");

            let mut t = trainer_on(&device, small());
            let (mean, std) = (t.reconstruct(&x).await.unwrap(), t.reconstruct_std(&x).await.unwrap());
            let want: Vec<f32> = mean.iter().map(|p| (p * (1.0 - p)).sqrt()).collect();
            common::assert_close("Bernoulli σ = sqrt(p (1 - p))", &std, &want, 1e-4, 1e-6);
        });
    }
}

#[test]
fn bad_configurations_name_the_field() {
    let (train, test) = common::small_mnist(64);
    for (config, field) in [
        (Config { latent: 0, ..small() }, "latent"),
        (Config { latent: 65, ..small() }, "latent"),
        (Config::mlp(784, &[64, 0], 4), "encoder"),
        (Config { encoder: Config::conv().encoder, ..small() }, "encoder"), // a conv on flat pixels
        (Config { decoder: Config::conv().decoder, ..small() }, "decoder"), // 1x28x28 out, [784] in
        (Config { learning_rate: f32::NAN, ..small() }, "learning_rate"),
        (Config { beta: -1.0, ..small() }, "beta"),
        (Config { samples: 0, ..small() }, "samples"),
        (Config { likelihood: Likelihood::gaussian_var(), ..small() }, "decoder"), // one output per pixel, not two
        (small().with_likelihood(Likelihood::GaussianVar { variance_floor: 0.0 }), "likelihood"),
        (small().with_likelihood(Likelihood::GaussianVar { variance_floor: 2.0 }), "likelihood"),
        (Config { latent_type: LatentType::categorical(1), ..small() }, "latent_type"),
        (Config { latent_type: LatentType::Categorical { classes: 10, tau_start: 0.5, tau_floor: 1.0, tau_rate: 0.0 }, ..small() }, "latent_type"),
        (Config { latent_type: LatentType::Categorical { classes: 10, tau_start: 1.0, tau_floor: 0.5, tau_rate: -1.0 }, ..small() }, "latent_type"),
        (Config { latent_type: LatentType::Categorical { classes: 10, tau_start: f32::NAN, tau_floor: 0.5, tau_rate: 0.0 }, ..small() }, "latent_type"),
        (Config { batch_size: 100, ..small() }, "batch_size"), // more than the 64 images
    ] {
        let gpu = pollster::block_on(Gpu::new()).unwrap();
        match Trainer::new(gpu, config.clone(), &train, &test) {
            Err(TrainError::Config(e)) => assert_eq!(e.field, field, "{config:?}: {e}"),
            other => panic!("{config:?}: expected a config error naming {field}, got {:?}", other.map(|_| ())),
        }
    }
    let gpu = pollster::block_on(Gpu::new()).unwrap();
    let wrong_size = Config::mlp(100, &[64], 4);
    assert!(matches!(Trainer::new(gpu, wrong_size, &train, &test), Err(TrainError::Data(_))));
}

/// The importance-weighted bound runs in batches whose activations fit one buffer: k samples of
/// one conv digit that cannot fit are refused, naming k, rather than losing the device.
#[test]
fn iwae_batches_fit_the_device_or_k_is_refused() {
    let (train, test) = common::small_mnist(256);
    let gpu = pollster::block_on(common::gpu_or_fail(|s| println!("{s}")));
    let limit = gpu.device.limits().max_storage_buffer_binding_size;
    let mut t = Trainer::new(gpu, Config::conv(), &train, &test).unwrap_or_else(|e| panic!("{e}"));
    pollster::block_on(async {
        // 2048 conv decoder rows take about 205 MB of activations (lavapipe and WebGPU's
        // default allow 128 MB per buffer; a GPU allowing more computes it).
        match t.importance_weighted_nll(2048).await {
            Err(TrainError::Config(e)) if limit < 210_000_000 => assert_eq!(e.field, "k", "{e}"),
            Ok(v) if limit >= 210_000_000 => assert!(v.is_finite()),
            other => panic!("k = 2048 under a {limit}-byte buffer limit gave {other:?}"),
        }
        let iwae = t.importance_weighted_nll(2).await.unwrap();
        assert!(iwae.is_finite() && iwae > 0.0, "{iwae}");
    });
}

#[test]
fn a_non_finite_loss_stops_training_and_keeps_the_weights() {
    for device in devices() {
        let mut t = trainer_on(&device, small());
        pollster::block_on(async {
            let mut huge = t.parameters().await.unwrap();
            let out = t.layout().tensor("logvar.bias").unwrap().range();
            for v in &mut huge[out] {
                *v = 1e6; // exp(logvar) overflows: KL is infinite
            }
            t.set_parameters(&huge).unwrap();
            // The GPU notices at the readback, the CPU at once.
            let err = t.train(5).and(t.metrics().await.map(|_| ())).unwrap_err();
            assert!(matches!(err, TrainError::Diverged { .. }), "{err}");
            assert!(err.to_string().contains("diverged"));
            assert_eq!(t.parameters().await.unwrap(), huge, "no update was applied after divergence");
            assert!(matches!(t.train(1), Err(TrainError::Diverged { .. })));
        });
    }
}

#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    let mut t = trainer(small());
    pollster::block_on(async {
        t.train(2).unwrap();
        t.metrics().await.unwrap();
        t.gpu().lose();
        // The loss may be noticed at the submission or at the readback; from then on, every
        // call says so.
        let _ = t.train(1);
        let lost = |r: Result<(), TrainError>| matches!(r, Err(TrainError::Gpu(GpuError::Lost(_))));
        assert!(lost(t.metrics().await.map(|_| ())), "metrics after the device was lost");
        assert!(lost(t.train(1)), "training after the device was lost");
        assert!(lost(t.decode(&[0.0; 4]).await.map(|_| ())), "decoding after the device was lost");
    });
}

/// N steps, a checkpoint with Adam's state, a new trainer resumed from it, M more steps: the
/// same weights as N + M steps without a stop (the batches, noise and Adam's t continue). N is
/// mid-epoch and the M steps cross two epochs' ends, so the data order must be restored too.
/// Without the state, the same file gives different weights (Adam restarts). On each backend,
/// and from one to the other (the page's switch): a GPU checkpoint resumed on the CPU ends
/// where the GPU would, within the parity tests' tolerance.
#[test]
fn a_checkpoint_with_adams_state_resumes_exactly() {
    use webvae::checkpoint::{load, save, save_with_optimizer};
    let config = Config { samples: 2, ..small() };
    let (n, m) = (21, 27); // 16 steps per epoch
    let [gpu, cpu] = devices();
    for (from, to) in [(&gpu, &gpu), (&cpu, &cpu), (&gpu, &cpu)] {
        pollster::block_on(async {
            let mut straight = trainer_on(from, config.clone());
            let initial = straight.parameters().await.unwrap();
            straight.train(n + m).unwrap();
            let want = straight.parameters().await.unwrap();

            let mut first = trainer_on(from, config.clone());
            first.set_parameters(&initial).unwrap();
            first.train(n).unwrap();
            let (params, state) = (first.parameters().await.unwrap(), first.optimizer_state().await.unwrap());
            assert_eq!(state.step, n);
            let layout = first.layout().clone();
            let file = load(&save_with_optimizer(&config, &layout, &params, n, Some(&state))).unwrap();
            assert_eq!(file.optimizer.as_ref(), Some(&state));
            let mut resumed = trainer_on(to, config.clone());
            resumed.resume(&file.parameters, file.optimizer.as_ref().unwrap()).unwrap();
            assert_eq!(resumed.step(), n);
            resumed.train(m).unwrap();
            let got = resumed.parameters().await.unwrap();
            let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            let (from_kind, to_kind) = (from.kind(), to.kind());
            println!("{from_kind} -> {to_kind}: resumed after {n} steps, {m} more: {differ} of {} weights differ from {} uninterrupted steps", got.len(), n + m);
            if from_kind == to_kind {
                common::assert_close("resumed weights", &got, &want, 0.0, 1e-6);
            } else {
                // As in the parity tests: tensor by tensor, within a small part of how far the
                // M steps moved it.
                common::assert_tensors_agree("weights resumed on the other backend", &layout.tensors, &got, &want, &params);
            }

            let plain = load(&save(&config, &layout, &params, n)).unwrap();
            assert!(plain.optimizer.is_none());
            let mut restarted = trainer_on(to, config.clone());
            restarted.set_parameters(&plain.parameters).unwrap();
            restarted.train(m).unwrap();
            let other = restarted.parameters().await.unwrap();
            assert!(other.iter().zip(&want).filter(|(a, b)| (*a - *b).abs() > 1e-4).count() > got.len() / 10, "without Adam's state the run should differ");
        });
    }
}

/// Categorical latents through the whole API: training lowers the discrete test figure, the
/// bound with 100 one-hot samples (20 variables: enough work per datapoint that lavapipe's loop
/// limit once cut it short) is below it, codes are class probabilities, reconstructions decode
/// them, and prior samples are one-hot.
#[test]
fn categorical_latents_train_encode_and_bound() {
    for device in devices() {
        let mut t = trainer_on(&device, Config { latent_type: LatentType::categorical(10), batch_size: 32, ..Config::mlp(784, &[256], 20) });
        let (_, test) = common::small_mnist(512);
        pollster::block_on(async {
            let before = t.evaluate().await.unwrap();
            t.train(8 * t.steps_per_epoch()).unwrap();
            let after = t.evaluate().await.unwrap();
            let (k1, k100) = (t.importance_weighted_nll(1).await.unwrap(), t.importance_weighted_nll(100).await.unwrap());
            println!("{}: discrete test nelbo {:.2} -> {:.2}; iwae k1 {k1:.2} k100 {k100:.2}", device.kind(), before.nelbo, after.nelbo);
            // Relaxed categorical latents start slowly (the KL stays near 0 for the first epochs).
            assert!(after.nelbo < before.nelbo - 10.0, "{before:?} -> {after:?}");
            assert!(k100 < after.nelbo && k100 <= k1 + 0.05 && k100 > after.nelbo - 30.0, "k100 {k100}, k1 {k1}, nelbo {}", after.nelbo);
            assert!((k1 - after.nelbo).abs() < 5.0, "k = 1 estimates the ELBO: {k1} vs {}", after.nelbo);

            let x: Vec<f32> = (0..3).flat_map(|i| test.image(i)).collect();
            let Encoding::Categorical { probabilities } = t.encode(&x).await.unwrap() else { panic!("categorical latents") };
            assert_eq!(probabilities.len(), 3 * 200);
            assert!(probabilities.chunks(10).all(|q| (q.iter().sum::<f32>() - 1.0).abs() < 1e-5));
            common::assert_close("reconstruct = decode(probabilities)", &t.reconstruct(&x).await.unwrap(), &t.decode(&probabilities).await.unwrap(), 1e-5, 1e-6);
            let prior = t.prior_codes(4, 7);
            assert!(prior.chunks(10).all(|v| v.iter().filter(|&&p| p == 1.0).count() == 1 && v.iter().sum::<f32>() == 1.0), "prior codes are one-hot");
        
        });
    }
}

/// `evaluate()` (the chart's test −ELBO, `make quality`'s last line) and the importance-weighted
/// bound against the f64 oracle (`reference::evaluate`, `reference::importance_weighted_nll`),
/// for every preset family (MLP, tanh with a fixed Gaussian, learned variance, categorical,
/// conv), on both backends, after a few steps of training. The test set holds 100 digits: no
/// batch size here divides it, so the last batch is partial, as the page's 1,000 digits at
/// batch 128 always are; k = 64 makes the bound's batches 32 digits, the last partial too.
#[test]
fn evaluation_and_the_importance_weighted_bound_match_the_oracle() {
    use webvae::reference;
    let (train, test) = common::small_mnist(512);
    let test = test.take(100);
    let images: Vec<f64> = (0..test.count).flat_map(|i| test.image(i)).map(f64::from).collect();
    for device in devices() {
        for config in common::parity_configs() {
            assert_ne!(test.count % config.batch_size, 0, "the last batch should be partial");
            let mut t = Backend::new(&device, config.clone(), &train, &test).unwrap_or_else(|e| panic!("{e}"));
            let layout = t.layout().clone();
            pollster::block_on(async {
                t.train(10).unwrap();
                let params = common::f64s(&t.parameters().await.unwrap());
                let got = t.evaluate().await.unwrap();
                let (reconstruction, kl) = reference::evaluate(&config, &layout, &params, &images, config.batch_size);
                let iwae = t.importance_weighted_nll(64).await.unwrap();
                let want_iwae = reference::importance_weighted_nll(&config, &layout, &params, &images, 64);
                let what = format!("{} on the {}", config.summary(), device.kind());
                println!("{what}: test nelbo {:.4} (oracle {:.4}), KL {:.4} ({kl:.4}), IWAE k64 {iwae:.4} ({want_iwae:.4})", got.nelbo, reconstruction + kl, got.kl);
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-3 + 1e-5 * b.abs();
                assert!(close(got.reconstruction, reconstruction), "{what}: reconstruction {} vs the oracle's {reconstruction}", got.reconstruction);
                assert!(close(got.kl, kl), "{what}: KL {} vs the oracle's {kl}", got.kl);
                assert!(close(iwae, want_iwae), "{what}: IWAE {iwae} vs the oracle's {want_iwae}");
            });
        }
    }
}
