//! The CPU oracle against finite differences: each layer type alone on awkward shapes (every
//! weight, bias and input element), then whole models (every parameter tensor and the encoder
//! outputs mu and log-variance), for each activation and likelihood, with L > 1 and beta != 1.
#![cfg(not(target_arch = "wasm32"))]

use webvae::model::{initial_parameters, Config, LatentType, Layer, Layout, Likelihood};
use webvae::ops::categorical::{self, Mode};
use webvae::model::Activation;
use webvae::ops::{self, latent, loss, optim};
use webvae::reference;
use webvae::rng::Rng;

mod common;

/// Central difference of f at `at`, in f64.
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
fn each_layer_matches_finite_differences() {
    let mut rng = Rng::new(4);
    let mut cases = common::awkward_convolutions();
    cases.push((Layer::linear(5, Activation::Tanh), webvae::model::Shape::Flat(7)));
    for (layer, input) in cases {
        let l = common::lone_layer(layer, input);
        let rows = 2;
        let (w, b, _) = l.parameter_sizes().unwrap();
        let params: Vec<f64> = (0..w + b).map(|_| rng.range(-0.5, 0.5) as f64).collect();
        // Inputs away from zero, so that no ReLU sits on its kink within the step.
        let x: Vec<f64> = (0..rows * input.len()).map(|_| rng.range(0.1, 1.0) as f64 * if rng.uniform() < 0.5 { -1.0 } else { 1.0 }).collect();
        let r: Vec<f64> = (0..rows * l.output.len()).map(|_| rng.range(-1.0, 1.0) as f64).collect();
        // L = sum r * layer(x), so dL/d(pre-activation) = r * act'(y).
        let loss = |p: &[f64], x: &[f64]| ops::layer_forward(&l, p, x, rows).iter().zip(&r).map(|(y, r)| y * r).sum::<f64>();
        let y = ops::layer_forward(&l, &params, &x, rows);
        let dz: Vec<f64> = y.iter().zip(&r).map(|(&y, &r)| r * l.activation().derivative_from_output(y)).collect();
        let mut grads = vec![0.0; params.len()];
        let dx = ops::layer_backward(&l, &params, &x, &dz, rows, Activation::Identity, &mut grads);
        let what = format!("{} on {input}", layer.describe());
        assert!(grads.iter().any(|&g| g != 0.0) && dx.iter().any(|&g| g != 0.0), "{what}: all-zero gradients");
        for i in 0..params.len() {
            let n = numeric(|v| { let mut p = params.clone(); p[i] = v; loss(&p, &x) }, params[i]);
            check(&format!("{what} parameter {i}"), grads[i], n);
        }
        for i in 0..x.len() {
            let n = numeric(|v| { let mut xx = x.clone(); xx[i] = v; loss(&params, &xx) }, x[i]);
            check(&format!("{what} input {i}"), dx[i], n);
        }
    }
}

/// The transposed convolution is the adjoint of the convolution: <down(L), S> = <L, up(S)>,
/// and the oracle computes them independently (a gather and a scatter).
#[test]
fn convolution_and_transpose_are_adjoint() {
    let mut rng = Rng::new(8);
    for (layer, input) in common::awkward_convolutions() {
        let l = common::lone_layer(layer, input);
        let g = ops::conv::Geometry::of(&l);
        let w: Vec<f64> = (0..g.weight_len()).map(|_| rng.range(-1.0, 1.0) as f64).collect();
        let large: Vec<f64> = (0..2 * g.large_len()).map(|_| rng.range(-1.0, 1.0) as f64).collect();
        let small: Vec<f64> = (0..2 * g.small_len()).map(|_| rng.range(-1.0, 1.0) as f64).collect();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        let (lhs, rhs) = (dot(&ops::conv::down(&g, &large, &w, 2), &small), dot(&large, &ops::conv::up(&g, &small, &w, 2)));
        assert!((lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0), "{}: {lhs} vs {rhs}", layer.describe());
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mlp = |activation, likelihood| Config { likelihood, beta: 0.7, samples: 2, batch_size: 4, seed: 3, ..common::mlp_with(6, &[5, 4], 3, activation) };
    for config in [
        mlp(Activation::Relu, Likelihood::Bernoulli),
        mlp(Activation::Tanh, Likelihood::Bernoulli),
        mlp(Activation::Tanh, Likelihood::Gaussian { sigma: 0.3 }),
        common::tiny_conv(Likelihood::Bernoulli),
        common::tiny_conv(Likelihood::Gaussian { sigma: 0.3 }),
        // Floors near the initial log-variances, so that some are clamped and some are not.
        mlp(Activation::Relu, Likelihood::Bernoulli).with_likelihood(Likelihood::GaussianVar { variance_floor: 0.9 }),
        common::tiny_conv(Likelihood::Bernoulli).with_likelihood(Likelihood::GaussianVar { variance_floor: 0.9 }),
        // Categorical latents at fixed Gumbel noise, step 5 of a schedule still above its floor.
        Config { latent_type: categorical(4), ..mlp(Activation::Tanh, Likelihood::Bernoulli) },
        Config { latent: 2, latent_type: categorical(3), ..common::tiny_conv(Likelihood::Gaussian { sigma: 0.3 }) },
    ] {
        let what = format!("{} {:?}", config.summary(), config.likelihood);
        let layout = Layout::new(&config);
        let params: Vec<f64> = initial_parameters(&config, &layout, None).iter().map(|&p| p as f64).collect();
        let mut rng = Rng::new(11);
        let x: Vec<f64> = (0..config.batch_size * config.pixels()).map(|_| rng.uniform() as f64).collect();
        let eps = reference::step_eps(&config, 5, config.batch_size);
        let beta = config.beta as f64;
        let loss_at = |p: &[f64]| reference::forward(&config, &layout, p, &x, &eps, 5).losses(beta).loss;

        let fwd = reference::forward(&config, &layout, &params, &x, &eps, 5);
        let (grads, dml) = reference::backward(&config, &layout, &params, &x, &fwd);
        if config.likelihood.outputs_per_pixel() == 2 {
            let (d, floor) = (config.pixels(), config.likelihood.log_variance_floor() as f64);
            let out = fwd.decoder.last().unwrap();
            let clamped = out.chunks(2 * d).flat_map(|r| &r[d..]).filter(|&&s| s < floor).count();
            let total = out.len() / 2;
            assert!(clamped > total / 10 && clamped < total * 9 / 10, "{what}: {clamped} of {total} log-variances clamped; choose a floor that splits them");
        }

        // Every element of every tensor (the model is tiny).
        for t in &layout.tensors {
            for i in t.range() {
                let n = numeric(|v| { let mut p = params.clone(); p[i] = v; loss_at(&p) }, params[i]);
                check(&format!("{what} {}[{}]", t.name, i - t.offset), grads[i], n);
            }
        }
        // The encoder outputs: perturb mu and log-variance directly.
        for i in 0..fwd.ml.len() {
            let n = numeric(
                |v| {
                    let mut ml = fwd.ml.clone();
                    ml[i] = v;
                    let (_, recon, kl) = reference::decode(&config, &layout, &params, &x, &ml, &eps, 5);
                    recon.iter().sum::<f64>() / recon.len() as f64 + beta * kl.iter().sum::<f64>() / kl.len() as f64
                },
                fwd.ml[i],
            );
            check(&format!("{what} d(mu, logvar)[{i}]"), dml[i], n);
        }
    }
}

/// The reconstruction loss alone, every likelihood, at every decoder output; the learned
/// variance's log-variances sit on both sides of the floor, from 1e-3 to 0.5 away (the loss
/// has a kink at the floor itself, where no derivative exists).
#[test]
fn reconstruction_matches_finite_differences() {
    let mut rng = Rng::new(6);
    let (batch, rows, pixels) = (3, 6, 5);
    let x: Vec<f64> = (0..batch * pixels).map(|i| if i % 4 == 0 { 0.0 } else { rng.uniform() as f64 }).collect();
    for lik in [Likelihood::Bernoulli, Likelihood::Gaussian { sigma: 0.3 }, Likelihood::gaussian_var(), Likelihood::GaussianVar { variance_floor: 0.2 }] {
        let w = lik.outputs_per_pixel() * pixels;
        let floor = lik.log_variance_floor() as f64;
        let (mut below, mut above) = (0, 0);
        let out: Vec<f64> = (0..rows * w)
            .map(|i| {
                if i % w < pixels {
                    return rng.range(-4.0, 4.0) as f64;
                }
                let side = if i % 2 == 0 { below += 1; -1.0 } else { above += 1; 1.0 };
                floor + side * rng.range(1e-3, 0.5) as f64
            })
            .collect();
        let loss = |o: &[f64]| loss::reconstruction(o, &x, batch, pixels, lik, 0.0).0.iter().sum::<f64>() / rows as f64;
        let (_, grad) = loss::reconstruction(&out, &x, batch, pixels, lik, 1.0 / rows as f64);
        for i in 0..out.len() {
            let n = numeric(|v| { let mut o = out.clone(); o[i] = v; loss(&o) }, out[i]);
            check(&format!("{lik:?} output {i}"), grad[i], n);
            if i % w >= pixels && out[i] < floor {
                assert_eq!(grad[i], 0.0, "{lik:?}: a clamped log-variance has no gradient");
            }
        }
        assert!(lik.outputs_per_pixel() == 1 || (below > 5 && above > 5));
    }
}

fn categorical(classes: usize) -> LatentType {
    LatentType::Categorical { classes, tau_start: 0.9, tau_floor: 0.3, tau_rate: 0.02 }
}

/// The categorical pieces alone: relaxed samples are distributions that sharpen to the one-hot
/// sample as tau falls; the KL is 0 for uniform logits and ln K for a certain class.
#[test]
fn gumbel_softmax_samples_and_kl() {
    let mut rng = Rng::new(12);
    let (batch, classes) = (3, 5);
    let logits: Vec<f64> = (0..batch * 2 * classes).map(|_| rng.range(-2.0, 2.0) as f64).collect();
    let noise: Vec<f64> = (0..2 * batch * 2 * classes).map(|i| categorical::gumbel(1, 2, (i / 10) as u32, (i % 10) as u32)).collect();
    let hard = categorical::sample(&logits, &noise, batch, classes, Mode::OneHot, 1.0);
    for tau in [1.0, 0.3, 1e-4] {
        let y = categorical::sample(&logits, &noise, batch, classes, Mode::Relaxed, tau);
        for (v, h) in y.chunks(classes).zip(hard.chunks(classes)) {
            assert!((v.iter().sum::<f64>() - 1.0).abs() < 1e-12 && v.iter().all(|&p| p >= 0.0), "{v:?}");
            let argmax = (0..classes).fold(0, |b, k| if v[k] > v[b] { k } else { b });
            assert_eq!(h[argmax], 1.0, "the relaxed sample's mode is the one-hot sample's class");
            if tau < 0.01 {
                assert!(v[argmax] > 0.99, "a small tau is nearly one-hot: {v:?}");
            }
        }
    }
    let uniform = vec![0.7; classes];
    assert!(categorical::kl(&uniform, 1, classes)[0].abs() < 1e-12);
    let certain: Vec<f64> = (0..classes).map(|k| if k == 2 { 60.0 } else { 0.0 }).collect();
    assert!((categorical::kl(&certain, 1, classes)[0] - (classes as f64).ln()).abs() < 1e-9);
}

#[test]
fn gumbel_noise_is_gumbel_distributed() {
    let n = 200_000;
    let g: Vec<f64> = (0..n).map(|i| categorical::gumbel(9, i / 1000, i % 1000, 7)).collect();
    let mean = g.iter().sum::<f64>() / n as f64;
    let var = g.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    // Gumbel(0, 1): mean = Euler's gamma, variance = pi^2 / 6, P(g < 0) = 1/e.
    assert!((mean - 0.5772156649).abs() < 0.01, "mean {mean}");
    assert!((var - std::f64::consts::PI.powi(2) / 6.0).abs() < 0.02, "variance {var}");
    let below = g.iter().filter(|&&v| v < 0.0).count() as f64 / n as f64;
    assert!((below - (-1.0f64).exp()).abs() < 0.005, "P(g < 0) = {below}");
}

#[test]
fn eps_is_standard_normal() {
    let n = 200_000;
    let e: Vec<f64> = (0..n).map(|i| latent::eps(9, i / 1000, i % 1000, 7)).collect();
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
    let mut p: Vec<f64> = vec![1.0, 1.0, 1.0];
    let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
    optim::adam(&mut p, &[0.5, -2.0, 0.0], &mut m, &mut v, 1, 0.01);
    assert!((p[0] - 0.99).abs() < 1e-9 && (p[1] - 1.01).abs() < 1e-9 && p[2] == 1.0, "{p:?}");
}

#[test]
fn cpu_training_lowers_the_loss() {
    let (train, _) = webvae::data::bundled_mnist().unwrap();
    let config = Config { batch_size: 32, ..Config::mlp(784, &[64], 8) };
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

/// SiLU's slope, written from its input, against finite differences, across both signs and the
/// tails (where sigmoid saturates).
#[test]
fn silu_matches_finite_differences() {
    use webvae::ops::elementwise;
    let z: Vec<f64> = (-40..=40).map(|i| i as f64 * 0.37 + 0.011).chain([-60.0, 35.0]).collect();
    let dy: Vec<f64> = (0..z.len()).map(|i| 1.0 + 0.1 * (i % 7) as f64).collect();
    let dz = elementwise::silu_backward(&z, &dy);
    for i in 0..z.len() {
        let n = numeric(|v| elementwise::silu_forward(&[v])[0] * dy[i], z[i]);
        check(&format!("silu at {}", z[i]), dz[i], n);
    }
    // The shape of SiLU: its minimum, -0.2785 at z = -1.2785, and y -> z for large z.
    let y = elementwise::silu_forward(&[-1.2784645, 0.0, 20.0]);
    assert!((y[0] + 0.2784645).abs() < 1e-6 && y[1] == 0.0 && (y[2] - 20.0).abs() < 1e-7, "{y:?}");
}

/// A Gaussian group with and without a prior tensor (a lower group, and the top group's
/// N(0, I)): the gradients of sum(r * z) + w * sum(KL) w.r.t. every prior and delta value
/// against finite differences; the KL against N(0, I)'s of `ops::latent` and against a Monte
/// Carlo mean of the log-ratio; the log-ratio against the two densities written out.
#[test]
fn gaussian_group_matches_finite_differences() {
    use webvae::ops::gaussian::{self, Mode};
    let mut rng = Rng::new(11);
    let (rows, n, w) = (3usize, 5usize, 0.7);
    let vals = |rng: &mut Rng| -> Vec<f64> { (0..rows * 2 * n).map(|i| if i % (2 * n) < n { rng.range(-1.5, 1.5) } else { rng.range(-1.5, 1.0) } as f64).collect() };
    let (prior, delta) = (vals(&mut rng), vals(&mut rng));
    let eps = gaussian::noise(Mode::Posterior, 5, 3, rows, n, 40);
    let r: Vec<f64> = (0..rows * n).map(|_| rng.range(-1.0, 1.0) as f64).collect();
    for with_prior in [true, false] {
        let prior = with_prior.then_some(&prior[..]);
        let loss = |p: Option<&[f64]>, d: &[f64]| {
            let z = gaussian::sample(Mode::Posterior, p, Some(d), &eps, rows, n);
            z.iter().zip(&r).map(|(z, r)| z * r).sum::<f64>() + w * gaussian::kl(p, d, rows, n).iter().sum::<f64>()
        };
        let (dprior, ddelta) = gaussian::backward(prior, &delta, &eps, &r, rows, n, w);
        for i in 0..delta.len() {
            let nd = numeric(|v| { let mut d = delta.clone(); d[i] = v; loss(prior, &d) }, delta[i]);
            check(&format!("gaussian d delta {i} (prior {with_prior})"), ddelta[i], nd);
            if let Some(p) = prior {
                let np = numeric(|v| { let mut pp = p.to_vec(); pp[i] = v; loss(Some(&pp), &delta) }, p[i]);
                check(&format!("gaussian d prior {i}"), dprior[i], np);
            }
        }
    }
    // With no prior tensor the KL is that to N(0, I).
    let kl0 = gaussian::kl(None, &delta, rows, n);
    for (a, b) in kl0.iter().zip(latent::kl(&delta, rows, n)) {
        assert!((a - b).abs() < 1e-12, "KL to N(0, I): {a} vs ops::latent's {b}");
    }
    // log q(z) - log p(z), written out from the two normal densities.
    let z = gaussian::sample(Mode::Posterior, Some(&prior), Some(&delta), &eps, rows, n);
    let ratio = gaussian::log_ratio(Some(&prior), &delta, &eps, rows, n);
    let log_normal = |x: f64, mu: f64, lv: f64| -0.5 * (2.0 * std::f64::consts::PI).ln() - 0.5 * lv - 0.5 * (x - mu).powi(2) / lv.exp();
    for row in 0..rows {
        let want: f64 = (0..n)
            .map(|j| {
                let (o, x) = (row * 2 * n + j, z[row * n + j]);
                log_normal(x, prior[o] + delta[o], prior[o + n] + delta[o + n]) - log_normal(x, prior[o], prior[o + n])
            })
            .sum();
        assert!((ratio[row] - want).abs() < 1e-9, "row {row}: log-ratio {} vs densities {want}", ratio[row]);
    }
    // KL(q || p) = E_q[log q - log p]: the mean over 40,000 draws of the first row.
    let draws = 40_000;
    let one = |t: &[f64]| t[..2 * n].repeat(draws);
    let many = gaussian::noise(Mode::Posterior, 8, 1, draws, n, 0);
    let mc = gaussian::log_ratio(Some(&one(&prior)), &one(&delta), &many, draws, n).iter().sum::<f64>() / draws as f64;
    let exact = gaussian::kl(Some(&prior), &delta, 1, n)[0];
    assert!((mc - exact).abs() < 0.03 * exact.max(1.0), "Monte Carlo KL {mc} vs analytic {exact}");
    // The modes: means draw no noise; the prior modes do not read delta.
    assert!(gaussian::noise(Mode::PosteriorMean, 5, 3, rows, n, 0).iter().all(|&e| e == 0.0));
    let prior_mean = gaussian::sample(Mode::PriorMean, Some(&prior), Some(&delta), &vec![0.0; rows * n], rows, n);
    assert_eq!(prior_mean[n..2 * n], prior[2 * n..3 * n]);
}
