//! The oracle of a graph model (`model::Graph`): its forward and backward passes node by node in
//! f64 with each op's reference, a node read by several others summing their gradients.
//!
//! Rows: each row is one datapoint (or one sample of it): a lower group's prior depends on the
//! sample drawn above it, so nothing is shared between rows.

use crate::model::{Activation, GraphLayout, Likelihood, Op};
use crate::ops::gaussian::{self, Mode};
use crate::ops::{self, elementwise, loss};

/// What a pass computed, kept for the backward pass.
#[derive(Clone, Debug)]
pub struct Pass {
    pub rows: usize,
    /// Each node's output [rows, len] (x first), empty where the pass did not need it.
    pub values: Vec<Vec<f64>>,
    /// Each group's noise [rows, n], top group first.
    pub eps: Vec<Vec<f64>>,
}

/// Runs `g` on `rows` rows. With `x` [rows, D], in `Mode::Posterior` or `PosteriorMean`
/// (training, reconstructions); without, in `Prior` or `PriorMean` (samples: the encoder is
/// not run). The noise is that of (seed, step) with each group's own dimensions.
pub fn forward(g: &GraphLayout, params: &[f64], x: Option<&[f64]>, rows: usize, mode: Mode, seed: u32, step: u32) -> Pass {
    let from_prior = matches!(mode, Mode::Prior | Mode::PriorMean);
    assert_eq!(x.is_none(), from_prior, "data in the posterior modes, none in the prior ones");
    let needed = g.needed(&vec![Some(mode); g.groups.len()]);
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); g.nodes.len()];
    let mut eps = vec![Vec::new(); g.groups.len()];
    values[0] = x.map_or_else(Vec::new, <[f64]>::to_vec);
    for (i, node) in g.nodes.iter().enumerate().skip(1) {
        if !needed[i] {
            continue;
        }
        let input = |k: usize| &values[node.inputs[k]][..];
        let y = match node.op.expect("only x has no op") {
            Op::Layer { .. } | Op::Heads { .. } => ops::layer_forward(node.layer.as_ref().expect("a layer node's layout"), params, input(0), rows),
            Op::Silu {} => elementwise::silu_forward(input(0)),
            Op::Add {} => elementwise::add(input(0), input(1)),
            Op::Gaussian {} => {
                let (group, dim_base) = node.group.expect("a gaussian node's group");
                let n = node.output.len();
                let (prior, delta) = priors(node.inputs.len(), &input);
                eps[group] = gaussian::noise(mode, seed, step, rows, n, dim_base);
                gaussian::sample(mode, prior, delta.filter(|_| !from_prior), &eps[group], rows, n)
            }
        };
        values[i] = y;
    }
    Pass { rows, values, eps }
}

/// (prior, delta) of a Gaussian node with `inputs` inputs.
fn priors<'a>(inputs: usize, input: &impl Fn(usize) -> &'a [f64]) -> (Option<&'a [f64]>, Option<&'a [f64]>) {
    if inputs == 2 { (Some(input(0)), Some(input(1))) } else { (None, Some(input(0))) }
}

impl Pass {
    /// The KL of each group [group][row] (a posterior pass).
    pub fn kl(&self, g: &GraphLayout) -> Vec<Vec<f64>> {
        g.groups
            .iter()
            .map(|&i| {
                let node = &g.nodes[i];
                let input = |k: usize| &self.values[node.inputs[k]][..];
                let (prior, delta) = priors(node.inputs.len(), &input);
                gaussian::kl(prior, delta.expect("a posterior"), self.rows, node.output.len())
            })
            .collect()
    }

    /// -log p(x | z) per row.
    pub fn reconstruction(&self, g: &GraphLayout, x: &[f64], likelihood: Likelihood) -> Vec<f64> {
        loss::reconstruction(&self.values[g.output], x, self.rows, g.nodes[0].output.len(), likelihood, 1.0).0
    }
}

/// The gradient of scale x sum over rows of (-log p(x | z) + sum_l kl_weights[l] KL_l) w.r.t.
/// every parameter, from a `Mode::Posterior` pass on x.
pub fn backward(g: &GraphLayout, params: &[f64], pass: &Pass, x: &[f64], likelihood: Likelihood, kl_weights: &[f64], scale: f64) -> Vec<f64> {
    let rows = pass.rows;
    let mut grads = vec![0.0; g.len];
    let mut d: Vec<Option<Vec<f64>>> = vec![None; g.nodes.len()];
    let (_, d_out) = loss::reconstruction(&pass.values[g.output], x, rows, g.nodes[0].output.len(), likelihood, scale);
    d[g.output] = Some(d_out);
    // Adds `g` to node j's gradient: a node read by several others gets the sum.
    fn give(d: &mut [Option<Vec<f64>>], j: usize, g: Vec<f64>) {
        match &mut d[j] {
            Some(sum) => elementwise::add_into(sum, &g),
            slot => *slot = Some(g),
        }
    }
    for (i, node) in g.nodes.iter().enumerate().skip(1).rev() {
        let value = |k: usize| &pass.values[node.inputs[k]][..];
        // Every node reaches the output (`Graph::layout` refuses one that nothing reads).
        let dy = d[i].take().unwrap_or_else(|| panic!("node {} got no gradient", node.name));
        match node.op.expect("only x has no op") {
            Op::Layer { .. } | Op::Heads { .. } => {
                let l = node.layer.as_ref().expect("a layer node's layout");
                let act = l.activation();
                let dz: Vec<f64> = dy.iter().zip(&pass.values[i]).map(|(&g, &y)| g * act.derivative_from_output(y)).collect();
                let dx = ops::layer_backward(l, params, value(0), &dz, rows, Activation::Identity, &mut grads);
                give(&mut d, node.inputs[0], dx);
            }
            Op::Silu {} => give(&mut d, node.inputs[0], elementwise::silu_backward(value(0), &dy)),
            Op::Add {} => {
                give(&mut d, node.inputs[0], dy.clone());
                give(&mut d, node.inputs[1], dy);
            }
            Op::Gaussian {} => {
                let (group, _) = node.group.expect("a gaussian node's group");
                let (prior, delta) = priors(node.inputs.len(), &value);
                let delta = delta.expect("a posterior");
                let w = kl_weights[group] * scale;
                let (dprior, ddelta) = gaussian::backward(prior, delta, &pass.eps[group], &dy, rows, node.output.len(), w);
                if prior.is_some() {
                    give(&mut d, node.inputs[0], dprior);
                }
                give(&mut d, *node.inputs.last().unwrap(), ddelta);
            }
        }
    }
    grads
}
