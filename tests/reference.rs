//! The CPU oracle against finite differences: every parameter tensor and the encoder outputs
//! (mu, log-variance), for each activation and likelihood, with L > 1 and beta != 1.
#![cfg(not(target_arch = "wasm32"))]

use webvae::model::{initial_parameters, Config, Layout, Likelihood};
use webvae::reference::{self, Activation};
use webvae::rng::Rng;

fn tiny(activation: Activation, likelihood: Likelihood) -> Config {
    Config {
        input: 6,
        hidden: vec![5, 4],
        latent: 3,
        activation,
        likelihood,
        beta: 0.7,
        samples: 2,
        batch_size: 4,
        seed: 3,
        ..Config::default()
    }
}

/// Central difference of the training objective, in f64.
fn numeric(f: impl Fn(f64) -> f64, at: f64) -> f64 {
    let h = 1e-5 * at.abs().max(1.0);
    (f(at + h) - f(at - h)) / (2.0 * h)
}

fn check(what: &str, analytic: f64, numeric: f64) {
    assert!(
        (analytic - numeric).abs() <= 1e-6 + 1e-5 * numeric.abs(),
        "{what}: analytic {analytic} vs finite difference {numeric}"
    );
}

#[test]
fn gradients_match_finite_differences() {
    for (act, lik) in [
        (Activation::Relu, Likelihood::Bernoulli),
        (Activation::Tanh, Likelihood::Bernoulli),
        (Activation::Tanh, Likelihood::Gaussian { sigma: 0.3 }),
    ] {
        let config = tiny(act, lik);
        let layout = Layout::new(&config);
        let params: Vec<f64> = initial_parameters(&config, &layout, None).iter().map(|&p| p as f64).collect();
        let mut rng = Rng::new(11);
        let x: Vec<f64> = (0..config.batch_size * config.input).map(|_| rng.uniform() as f64).collect();
        let eps = reference::step_eps(&config, 5, config.batch_size);
        let beta = config.beta as f64;
        let loss_at = |p: &[f64]| reference::forward(&config, &layout, p, &x, &eps).losses(beta).loss;

        let fwd = reference::forward(&config, &layout, &params, &x, &eps);
        let (grads, dml) = reference::backward(&config, &layout, &params, &x, &fwd);

        // Every element of every tensor (the model is tiny).
        for t in &layout.tensors {
            for i in t.range() {
                let n = numeric(|v| { let mut p = params.clone(); p[i] = v; loss_at(&p) }, params[i]);
                check(&format!("{act:?}/{lik:?} {}[{}]", t.name, i - t.offset), grads[i], n);
            }
        }
        // The encoder outputs: perturb mu and log-variance directly.
        for i in 0..fwd.ml.len() {
            let n = numeric(
                |v| {
                    let mut ml = fwd.ml.clone();
                    ml[i] = v;
                    let (_, recon, kl) = reference::decode(&config, &layout, &params, &x, &ml, &eps);
                    recon.iter().sum::<f64>() / recon.len() as f64 + beta * kl.iter().sum::<f64>() / kl.len() as f64
                },
                fwd.ml[i],
            );
            check(&format!("{act:?}/{lik:?} d(mu, logvar)[{i}]"), dml[i], n);
        }
    }
}

#[test]
fn eps_is_standard_normal() {
    let n = 200_000;
    let e: Vec<f64> = (0..n).map(|i| reference::eps(9, i / 1000, i % 1000, 7)).collect();
    let mean = e.iter().sum::<f64>() / n as f64;
    let var = e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    let within1 = e.iter().filter(|v| v.abs() < 1.0).count() as f64 / n as f64;
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!((var - 1.0).abs() < 0.01, "variance {var}");
    assert!((within1 - 0.6827).abs() < 0.005, "P(|eps| < 1) = {within1}");
}

#[test]
fn adam_first_step_moves_each_parameter_by_lr() {
    // With bias correction, the first step is lr * g / (|g| + eps) ~ lr * sign(g).
    let mut p = vec![1.0, 1.0, 1.0];
    let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
    reference::adam(&mut p, &[0.5, -2.0, 0.0], &mut m, &mut v, 1, 0.01);
    assert!((p[0] - 0.99).abs() < 1e-9 && (p[1] - 1.01).abs() < 1e-9 && p[2] == 1.0, "{p:?}");
}

#[test]
fn cpu_training_lowers_the_loss() {
    let (train, _) = webvae::data::bundled_mnist().unwrap();
    let config = Config { hidden: vec![64], latent: 8, batch_size: 32, ..Config::default() };
    let layout = Layout::new(&config);
    let mut t = reference::Trainer::new(config.clone(), &initial_parameters(&config, &layout, None));
    let batch = |s: usize| -> Vec<f64> {
        (0..32).flat_map(|i| train.image(s * 32 + i)).map(|p| p as f64).collect()
    };
    let first: f64 = (0..5).map(|s| t.step(&batch(s)).loss).sum::<f64>() / 5.0;
    for s in 5..60 {
        t.step(&batch(s));
    }
    let last: f64 = (60..65).map(|s| t.step(&batch(s)).loss).sum::<f64>() / 5.0;
    assert!(last < first - 100.0, "loss went from {first} to {last}");
}
