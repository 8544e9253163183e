//! A graph model (`model::Graph`) on the CPU path: its passes in f32 with the layers' products
//! on the pool (`layer_forward`, `layer_backward`), SiLU and the residual add from
//! `cpu::elementwise`, and each group of latents through the oracle's own f64 code
//! (`ops::gaussian`), as the other latent layers are. `reference::graph` is its oracle.

use crate::model::{Activation, Draw, GraphLayout, Op};
use crate::training::{check_draws, Decoded, GraphEvaluation, GraphMetrics, Schedule, TrainError};
use crate::ops::gaussian::{self, Mode};

use super::elementwise;
use super::{layer_backward, layer_forward, narrow, step_batch, test_batches, widen};

/// What a pass computed, kept for the backward pass.
pub struct Pass {
    pub rows: usize,
    /// Each node's output [rows, len] (x first), empty where the pass did not need it.
    pub values: Vec<Vec<f32>>,
    /// Each group's noise [rows, n], top group first.
    pub eps: Vec<Vec<f64>>,
    /// Each group's KL per row (posterior modes; empty otherwise).
    pub kl: Vec<Vec<f64>>,
}

/// (prior, delta) of a Gaussian node from its inputs' values, widened.
fn group_inputs(inputs: &[usize], values: &[Vec<f32>], with_delta: bool) -> (Option<Vec<f64>>, Option<Vec<f64>>) {
    let prior = (inputs.len() == 2).then(|| widen(&values[inputs[0]]));
    let delta = with_delta.then(|| widen(&values[*inputs.last().unwrap()]));
    (prior, delta)
}

/// Runs `g` on `rows` rows, as `reference::graph::forward` does: with `x` in the posterior
/// modes, without (the encoder skipped) in the prior modes.
pub fn forward(g: &GraphLayout, params: &[f32], x: Option<&[f32]>, rows: usize, mode: Mode, seed: u32, step: u32) -> Pass {
    let from_prior = matches!(mode, Mode::Prior | Mode::PriorMean);
    assert_eq!(x.is_none(), from_prior, "data in the posterior modes, none in the prior ones");
    forward_drawn(g, params, x, rows, &vec![Draw::Sample(mode); g.groups.len()], seed, step)
}

/// Runs `g` on `rows` rows, each group's z got as `draws` says (top group first); `x` is read
/// only if a posterior draw needs it.
pub fn forward_drawn(g: &GraphLayout, params: &[f32], x: Option<&[f32]>, rows: usize, draws: &[Draw], seed: u32, step: u32) -> Pass {
    let modes: Vec<Option<Mode>> = draws.iter().map(Draw::mode).collect();
    forward_nodes(g, params, x, rows, draws, seed, step, &g.needed(&modes))
}

/// `forward_drawn`, computing the nodes marked `needed` alone.
#[allow(clippy::too_many_arguments)]
fn forward_nodes(g: &GraphLayout, params: &[f32], x: Option<&[f32]>, rows: usize, draws: &[Draw], seed: u32, step: u32, needed: &[bool]) -> Pass {
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); g.nodes.len()];
    let (mut eps, mut kl) = (vec![Vec::new(); g.groups.len()], vec![Vec::new(); g.groups.len()]);
    if needed[0] {
        values[0] = x.expect("data for a posterior draw").to_vec();
    }
    for (i, node) in g.nodes.iter().enumerate().skip(1) {
        if !needed[i] {
            continue;
        }
        let input = |k: usize| &values[node.inputs[k]][..];
        let y = match node.op.expect("only x has no op") {
            Op::Layer { .. } | Op::Heads { .. } => layer_forward(node.layer.as_ref().expect("a layer node's layout"), params, input(0), rows),
            Op::Silu {} => elementwise::silu_forward(input(0)),
            Op::Add {} => elementwise::add(input(0), input(1)),
            Op::Gaussian {} => {
                let (group, dim_base) = node.group.expect("a gaussian node's group");
                let n = node.output.len();
                match &draws[group] {
                    Draw::Given(z) => z.clone(),
                    &Draw::Sample(mode) => {
                        let posterior = matches!(mode, Mode::Posterior | Mode::PosteriorMean);
                        let (prior, delta) = group_inputs(&node.inputs, &values, posterior);
                        eps[group] = gaussian::noise(mode, seed, step, rows, n, dim_base);
                        if let Some(delta) = &delta {
                            kl[group] = gaussian::kl(prior.as_deref(), delta, rows, n);
                        }
                        narrow(&gaussian::sample(mode, prior.as_deref(), delta.as_deref(), &eps[group], rows, n))
                    }
                }
            }
        };
        values[i] = y;
    }
    Pass { rows, values, eps, kl }
}

/// Backward from d out (the loss's gradient w.r.t. the output) and each group's KL weighted by
/// `kl_weights`, from a `Mode::Posterior` pass: writes every parameter's gradient to `grads`.
pub fn backward(g: &GraphLayout, params: &[f32], pass: &Pass, d_out: Vec<f32>, kl_weights: &[f64], grads: &mut [f32]) {
    let rows = pass.rows;
    let mut d: Vec<Option<Vec<f32>>> = vec![None; g.nodes.len()];
    d[g.output] = Some(d_out);
    // A node read by several others gets the sum of their gradients; x needs none.
    let give = |d: &mut [Option<Vec<f32>>], j: usize, v: Vec<f32>| match &mut d[j] {
        _ if j == 0 => {}
        Some(sum) => elementwise::add_into(sum, &v),
        slot => *slot = Some(v),
    };
    for (i, node) in g.nodes.iter().enumerate().skip(1).rev() {
        // Every node reaches the output (`Graph::layout` refuses one that nothing reads).
        let dy = d[i].take().unwrap_or_else(|| panic!("node {} got no gradient", node.name));
        let value = |k: usize| &pass.values[node.inputs[k]][..];
        match node.op.expect("only x has no op") {
            Op::Layer { .. } | Op::Heads { .. } => {
                let l = node.layer.as_ref().expect("a layer node's layout");
                let act = l.activation();
                let dz = if act == Activation::Identity {
                    dy
                } else {
                    dy.iter().zip(&pass.values[i]).map(|(&g, &y)| g * act.derivative_from_output(y as f64) as f32).collect()
                };
                let wanted = node.inputs[0] != 0;
                if let Some(dx) = layer_backward(l, params, value(0), &dz, rows, Activation::Identity, wanted, grads) {
                    give(&mut d, node.inputs[0], dx);
                }
            }
            Op::Silu {} => {
                let mut dx = vec![0.0; dy.len()];
                elementwise::silu_backward(value(0), &dy, &mut dx, false);
                give(&mut d, node.inputs[0], dx);
            }
            Op::Add {} => {
                give(&mut d, node.inputs[0], dy.clone());
                give(&mut d, node.inputs[1], dy);
            }
            Op::Gaussian {} => {
                let (group, _) = node.group.expect("a gaussian node's group");
                let (prior, delta) = group_inputs(&node.inputs, &pass.values, true);
                let delta = delta.expect("a posterior");
                let n = node.output.len();
                let (dprior, ddelta) = gaussian::backward(prior.as_deref(), &delta, &pass.eps[group], &widen(&dy), rows, n, kl_weights[group]);
                if prior.is_some() {
                    give(&mut d, node.inputs[0], narrow(&dprior));
                }
                give(&mut d, *node.inputs.last().unwrap(), narrow(&ddelta));
            }
        }
    }
}

/// A graph model (Bernoulli pixels) training on the CPU path.
pub struct GraphTrainer {
    layout: GraphLayout,
    schedule: Schedule,
    params: Vec<f32>,
    grads: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    train: crate::data::Dataset,
    test: crate::data::Dataset,
    step: u32,
    order: (u32, Vec<u32>),
    /// Since the last `metrics`: reconstruction, each group's KL, loss; steps; datapoints.
    totals: (f64, Vec<f64>, f64, u32, usize),
}

impl GraphTrainer {
    /// `graph` on the datasets' images, initialised as PyTorch initialises its layers (the
    /// output's bias at the mean pixel's logit, so the first samples are the mean digit).
    pub fn new(graph: &crate::model::Graph, schedule: Schedule, train: &crate::data::Dataset, test: &crate::data::Dataset) -> Result<GraphTrainer, TrainError> {
        let layout = crate::training::check_graph_and_data(graph, &schedule, train, test)?;
        let params = crate::model::initial_graph_parameters(&layout, schedule.seed, crate::model::Likelihood::Bernoulli, &train.mean_image());
        let n = layout.len;
        let groups = layout.groups.len();
        Ok(GraphTrainer {
            order: (0, crate::data::epoch_permutation(train.count, schedule.seed, 0)),
            params,
            grads: vec![0.0; n],
            m: vec![0.0; n],
            v: vec![0.0; n],
            train: train.clone(),
            test: test.clone(),
            step: 0,
            totals: (0.0, vec![0.0; groups], 0.0, 0, 0),
            layout,
            schedule,
        })
    }

    pub fn steps_per_epoch(&self) -> u32 {
        (self.train.count / self.schedule.batch_size) as u32
    }

    /// Takes `n` steps; a non-finite loss stops before its update, naming the step.
    pub fn train(&mut self, n: u32) -> Result<(), TrainError> {
        super::in_pool(|| {
            for _ in 0..n {
                self.train_step()?;
            }
            Ok(())
        })
    }

    fn train_step(&mut self) -> Result<(), TrainError> {
        let (batch, pixels) = (self.schedule.batch_size, self.train.pixels_per_image());
        let steps_per_epoch = self.steps_per_epoch();
        let x = step_batch(&self.train, &mut self.order, self.schedule.seed, self.step, steps_per_epoch, batch);
        let pass = forward(&self.layout, &self.params, Some(&x), batch, Mode::Posterior, self.schedule.seed, self.step);
        let out = widen(&pass.values[self.layout.output]);
        let (recon, d_out) = crate::ops::loss::reconstruction(&out, &widen(&x), batch, pixels, crate::model::Likelihood::Bernoulli, 1.0 / batch as f64);
        let warm = self.schedule.kl_weight(self.step);
        let kl: Vec<f64> = pass.kl.iter().map(|k| k.iter().sum()).collect();
        let recon_sum: f64 = recon.iter().sum();
        let loss = (recon_sum + warm * kl.iter().sum::<f64>()) / batch as f64;
        if !loss.is_finite() {
            return Err(TrainError::Diverged { step: self.step });
        }
        self.totals.0 += recon_sum;
        self.totals.1.iter_mut().zip(&kl).for_each(|(t, k)| *t += k);
        self.totals.2 += loss;
        self.totals.3 += 1;
        self.totals.4 += batch;
        let weights = vec![warm / batch as f64; kl.len()];
        let mut grads = std::mem::take(&mut self.grads);
        backward(&self.layout, &self.params, &pass, narrow(&d_out), &weights, &mut grads);
        self.grads = grads;
        let lr = self.schedule.learning_rate(self.step);
        self.step += 1;
        super::adam(&mut self.params, &self.grads, &mut self.m, &mut self.v, self.step, lr);
        Ok(())
    }

    pub fn layout(&self) -> &GraphLayout {
        &self.layout
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn step(&self) -> u32 {
        self.step
    }

    /// Averages of the training losses since the last call.
    pub async fn metrics(&mut self) -> Result<GraphMetrics, TrainError> {
        let groups = self.totals.1.len();
        let (recon, kl, loss, steps, points) = std::mem::replace(&mut self.totals, (0.0, vec![0.0; groups], 0.0, 0, 0));
        let per = |v: f64| v / points.max(1) as f64;
        Ok(GraphMetrics { steps, reconstruction: per(recon), kl: kl.into_iter().map(per).collect(), loss: loss / steps.max(1) as f64 })
    }

    /// The test set's negative ELBO (KL weight 1) with the evaluation noise, per datapoint.
    pub async fn evaluate(&mut self) -> Result<GraphEvaluation, TrainError> {
        Ok(super::in_pool(|| {
            let (mut recon, mut kl) = (0.0, vec![0.0; self.layout.groups.len()]);
            for (x, n) in test_batches(&self.test, self.schedule.batch_size) {
                let pass = forward(&self.layout, &self.params, Some(&x), n, Mode::Posterior, self.schedule.seed, crate::rng::EVAL_RNG_STEP);
                recon += self.reconstruction(&pass, &x).iter().sum::<f64>();
                kl.iter_mut().zip(&pass.kl).for_each(|(t, k)| *t += k.iter().sum::<f64>());
            }
            let count = self.test.count.max(1) as f64;
            let kl: Vec<f64> = kl.into_iter().map(|k| k / count).collect();
            GraphEvaluation::new(recon / count, kl)
        }))
    }

    /// The importance-weighted estimate of -log p(x) on the test set, k samples per datapoint
    /// (Burda et al.): log w = -recon - sum over groups of (log q - log p).
    pub async fn importance_weighted_nll(&mut self, k: usize) -> Result<f64, TrainError> {
        if !(1..=crate::training::IWAE_ROWS).contains(&k) {
            return Err(crate::model::ConfigError { field: "k", message: format!("must be 1..={}, got {k}", crate::training::IWAE_ROWS) }.into());
        }
        let total: f64 = super::in_pool(|| {
            let mut total = 0.0;
            for (x, n) in test_batches(&self.test, (crate::training::IWAE_ROWS / k).max(1)) {
                // Rows l * n + b: sample l of datapoint b.
                let xs = x.repeat(k);
                let pass = forward(&self.layout, &self.params, Some(&xs), n * k, Mode::Posterior, self.schedule.seed, crate::rng::IWAE_RNG_STEP);
                let mut log_w: Vec<f64> = self.reconstruction(&pass, &xs).iter().map(|r| -r).collect();
                for (group, &i) in self.layout.groups.iter().enumerate() {
                    let node = &self.layout.nodes[i];
                    let (prior, delta) = group_inputs(&node.inputs, &pass.values, true);
                    let ratio = gaussian::log_ratio(prior.as_deref(), &delta.expect("a posterior"), &pass.eps[group], n * k, node.output.len());
                    log_w.iter_mut().zip(ratio).for_each(|(w, r)| *w -= r);
                }
                for b in 0..n {
                    let w: Vec<f64> = (0..k).map(|l| log_w[l * n + b]).collect();
                    let max = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    total -= max + w.iter().map(|v| (v - max).exp()).sum::<f64>().ln() - (k as f64).ln();
                }
            }
            total
        });
        Ok(total / self.test.count.max(1) as f64)
    }

    /// `n` samples from the prior: each group's z drawn given those above (their means with
    /// `mean`), decoded to pixel probabilities.
    pub async fn sample(&mut self, n: usize, seed: u32, mean: bool) -> Result<Vec<f32>, TrainError> {
        let mode = if mean { Mode::PriorMean } else { Mode::Prior };
        Ok(self.decode_drawn(None, n, &vec![Draw::Sample(mode); self.layout.groups.len()], seed).await?.images)
    }

    /// Reconstructions of images x [n, pixels]: decoded at each group's posterior mean.
    pub async fn reconstruct(&mut self, x: &[f32]) -> Result<Vec<f32>, TrainError> {
        let rows = crate::training::rows_of(x, self.train.pixels_per_image())?;
        Ok(self.decode_drawn(Some(x), rows, &vec![Draw::Sample(Mode::PosteriorMean); self.layout.groups.len()], 0).await?.images)
    }

    /// q(z1 | x) of the top group for images x [n, pixels]: its mean and log-variance [n, Z1].
    pub async fn encode(&mut self, x: &[f32]) -> Result<crate::latent::Encoding, TrainError> {
        let rows = crate::training::rows_of(x, self.train.pixels_per_image())?;
        let top = &self.layout.nodes[self.layout.groups[0]];
        // The bottom-up path alone: nothing below the top group's heads is run.
        let draws = vec![Draw::Sample(Mode::PosteriorMean); self.layout.groups.len()];
        let needed = self.layout.needed_to_encode();
        let pass = super::in_pool(|| forward_nodes(&self.layout, &self.params, Some(x), rows, &draws, 0, crate::rng::PRIOR_RNG_STEP, &needed));
        let prior = (top.inputs.len() == 2).then(|| &pass.values[top.inputs[0]][..]);
        Ok(crate::training::top_posterior(prior, &pass.values[*top.inputs.last().unwrap()], top.output.len()))
    }

    /// `rows` rows decoded with each group's z got as `draws` says (top group first; `x`
    /// [rows, pixels] for posterior draws), noise from `seed`: the images and each group's z.
    pub async fn decode_drawn(&mut self, x: Option<&[f32]>, rows: usize, draws: &[Draw], seed: u32) -> Result<Decoded, TrainError> {
        check_draws(&self.layout, x, rows, draws, self.train.pixels_per_image())?;
        let pass = super::in_pool(|| forward_drawn(&self.layout, &self.params, x, rows, draws, seed, crate::rng::PRIOR_RNG_STEP));
        let images = crate::ops::loss::images(crate::model::Likelihood::Bernoulli, &pass.values[self.layout.output], self.train.pixels_per_image(), crate::ops::loss::Statistic::Mean);
        Ok(Decoded { images, z: self.layout.groups.iter().map(|&i| pass.values[i].clone()).collect() })
    }

    /// The parameters, in the flat layout of `layout()`.
    pub async fn parameters(&self) -> Result<Vec<f32>, TrainError> {
        Ok(self.params.clone())
    }

    /// Adam's state: its moments and this trainer's step count.
    pub async fn optimizer_state(&self) -> Result<crate::checkpoint::OptimizerState, TrainError> {
        Ok(crate::checkpoint::OptimizerState { m: self.m.clone(), v: self.v.clone(), step: self.step })
    }

    /// Replaces the parameters and Adam's state and continues from the state's step.
    pub fn resume(&mut self, params: &[f32], state: &crate::checkpoint::OptimizerState) -> Result<(), TrainError> {
        crate::training::check_state(self.layout.len, params, state)?;
        self.params = params.to_vec();
        self.m = state.m.clone();
        self.v = state.v.clone();
        self.step = state.step;
        Ok(())
    }

    /// Replaces the parameters (and restarts Adam's moments), e.g. from a checkpoint.
    pub fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainError> {
        if params.len() != self.layout.len {
            return Err(TrainError::Data(format!("expected {} parameters, got {}", self.layout.len, params.len())));
        }
        self.params = params.to_vec();
        self.m.fill(0.0);
        self.v.fill(0.0);
        Ok(())
    }

    fn reconstruction(&self, pass: &Pass, x: &[f32]) -> Vec<f64> {
        let out = widen(&pass.values[self.layout.output]);
        crate::ops::loss::reconstruction(&out, &widen(x), pass.rows, self.train.pixels_per_image(), crate::model::Likelihood::Bernoulli, 0.0).0
    }
}
