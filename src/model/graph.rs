//! A model as a graph of named nodes: each reads earlier nodes by name (the datapoint is `x`),
//! and its shape is inferred from theirs and checked, with errors that name the node. A graph is
//! what a model needs once its decoder reads the encoder's features at several scales, as a
//! hierarchy of latents does (`Graph::hvae`, after NVAE).
//!
//! Nodes are listed in the order they run, so every input is defined before it is read, and a
//! backward pass is the list in reverse. A node read by several others (a residual cell's skip
//! connection, encoder features feeding a posterior) gets the sum of their gradients.

use serde::{Deserialize, Serialize};

use super::layout::LayoutBuilder;
use crate::ops::gaussian::Mode;
use super::{bad, Config, ConfigError, LatentType, Layer, LayerLayout, Shape, Tensor};

/// What a node computes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// A layer (`model::Layer`) on its one input; its tensors are `{node}.weight` and
    /// `{node}.bias`, as those of a PyTorch module of the node's name.
    Layer { layer: Layer },
    /// SiLU (swish), z sigmoid(z), element-wise (`ops::elementwise`).
    Silu {},
    /// The residual add of its two inputs, of one shape.
    Add {},
    /// The Gaussian latents' heads of a layer stack (`Config`): a linear layer of 2 latent
    /// outputs (means, then log-variances) on a flat input, whose tensors are those of
    /// PyTorch's `mu` and `logvar` modules (`mu.weight`, `logvar.weight`, `mu.bias`,
    /// `logvar.bias`, placed as `Layout` places them).
    Heads { latent: usize },
    /// A group of Gaussian latents (`ops::gaussian`), flat or spatial. Inputs: [delta] for the
    /// top group, whose prior is N(0, I), or [prior, delta]; each holds means then
    /// log-variances (2Z values, or 2C channels), and the node's output z has half as many.
    Gaussian {},
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Layer { layer } => layer.kind(),
            Op::Heads { .. } => "heads",
            Op::Silu {} => "silu",
            Op::Add {} => "add",
            Op::Gaussian {} => "gaussian",
        }
    }
}

/// One node: its name, what it computes, and the nodes it reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<String>,
}

/// A model from the datapoint `x` to `output` (the likelihood's parameters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub output: String,
}

/// A node with its inputs resolved (indices into `GraphLayout::nodes`, where 0 is `x`), its
/// shape inferred and its parameters placed.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub name: String,
    /// None for `x`.
    pub op: Option<Op>,
    pub inputs: Vec<usize>,
    pub output: Shape,
    /// A layer node's layout (shapes and parameter offsets).
    pub layer: Option<LayerLayout>,
    /// A Gaussian node's group: its index (top first) and the first noise dimension it draws.
    pub group: Option<(usize, u32)>,
}

/// A graph with every shape inferred and every parameter placed.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphLayout {
    /// `x`, then the graph's nodes in order.
    pub nodes: Vec<Placed>,
    /// The Gaussian nodes, top group first.
    pub groups: Vec<usize>,
    pub output: usize,
    pub tensors: Vec<Tensor>,
    pub len: usize,
}

impl Graph {
    /// Infers and checks every node's shape from `input` and places the parameters, in node
    /// order. Errors (field "graph") name the node at fault and the shapes involved.
    pub fn layout(&self, input: Shape) -> Result<GraphLayout, ConfigError> {
        let mut b = LayoutBuilder::default();
        let x = Placed { name: "x".into(), op: None, inputs: vec![], output: input, layer: None, group: None };
        let (mut nodes, mut groups, mut dims) = (vec![x], vec![], 0u32);
        for node in &self.nodes {
            let fail = |message: String| bad("graph", format!("node {} ({}): {message}", node.name, node.op.kind()));
            if nodes.iter().any(|p| p.name == node.name) {
                return Err(fail("the name is taken by an earlier node (or is the input, x)".into()));
            }
            let inputs = node
                .inputs
                .iter()
                .map(|name| nodes.iter().position(|p| &p.name == name).ok_or_else(|| fail(format!("reads \"{name}\", which no node before it defines"))))
                .collect::<Result<Vec<usize>, _>>()?;
            let arity = match node.op {
                Op::Add {} => 2..=2,
                Op::Gaussian {} => 1..=2,
                _ => 1..=1,
            };
            if !arity.contains(&inputs.len()) {
                let (lo, hi) = (arity.start(), arity.end());
                let wanted = if lo == hi { format!("{lo}") } else { format!("{lo} or {hi}") };
                return Err(fail(format!("takes {wanted} inputs, got {}", inputs.len())));
            }
            let shape = |i: usize| nodes[inputs[i]].output;
            let described = |i: usize| format!("{} ({})", nodes[inputs[i]].name, shape(i));
            let (mut layer, mut group) = (None, None);
            let output = match node.op {
                Op::Layer { layer: l } => {
                    let placed = b.place(node.name.clone(), l, shape(0)).map_err(|e| fail(format!("on {}: {e}", described(0))))?;
                    let output = placed.output;
                    layer = Some(placed);
                    output
                }
                Op::Heads { latent } => {
                    let Shape::Flat(inputs) = shape(0) else {
                        return Err(fail(format!("on {}: the heads need a flat input (end with flatten or linear)", described(0))));
                    };
                    if latent == 0 {
                        return Err(fail("needs at least one latent".into()));
                    }
                    let placed = b.place_gaussian_heads(latent, inputs);
                    let output = placed.output;
                    layer = Some(placed);
                    output
                }
                Op::Silu {} => shape(0),
                Op::Add {} => {
                    if shape(0) != shape(1) {
                        return Err(fail(format!("its inputs {} and {} differ in shape", described(0), described(1))));
                    }
                    shape(0)
                }
                Op::Gaussian {} => {
                    let delta = inputs.len() - 1;
                    if inputs.len() == 2 && shape(0) != shape(1) {
                        return Err(fail(format!("its prior {} and posterior {} differ in shape", described(0), described(1))));
                    }
                    let half = match shape(delta) {
                        Shape::Flat(n) if n % 2 == 0 && n > 0 => Shape::Flat(n / 2),
                        Shape::Image { channels, height, width } if channels % 2 == 0 => Shape::Image { channels: channels / 2, height, width },
                        _ => return Err(fail(format!("{} must hold means then log-variances: an even length or channel count", described(delta)))),
                    };
                    group = Some((groups.len(), dims));
                    groups.push(nodes.len());
                    dims += half.len() as u32;
                    half
                }
            };
            nodes.push(Placed { name: node.name.clone(), op: Some(node.op), inputs, output, layer, group });
        }
        let output = nodes.iter().position(|p| p.name == self.output).ok_or_else(|| bad("graph", format!("the output \"{}\" is no node's name", self.output)))?;
        if let Some(unread) = (1..nodes.len()).find(|&i| i != output && !nodes.iter().any(|p| p.inputs.contains(&i))) {
            return Err(bad("graph", format!("node {} ({}) is computed but no node reads it", nodes[unread].name, nodes[unread].op.map_or("input", |o| o.kind()))));
        }
        if groups.is_empty() {
            return Err(bad("graph", "a VAE needs at least one gaussian node (a group of latents)"));
        }
        Ok(GraphLayout { nodes, groups, output, tensors: b.tensors, len: b.len })
    }

    /// A layer stack (`Config`: encoder, heads, z, decoder) as a graph, with the stack's own
    /// tensor names and flat layout (`Layout`), its initialisation and its noise: the encoder's
    /// layers `encoder.{i}` and the decoder's `decoder.{i}` numbered as the modules of an
    /// `nn.Sequential` (an activation other than identity is a module of its own), the heads
    /// `mu` / `logvar`, and z a group of Gaussian latents with prior N(0, I). Categorical latents
    /// are not a graph node yet.
    pub fn from_config(config: &Config) -> Result<Graph, ConfigError> {
        if !matches!(config.latent_type, LatentType::Gaussian {}) {
            return Err(bad("latent_type", "categorical latents are not a graph node yet"));
        }
        let mut g = Builder::default();
        let mut input = "x".to_string();
        let stack = |g: &mut Builder, prefix: &str, layers: &[Layer], input: &mut String| {
            let mut index = 0;
            for &layer in layers {
                let name = format!("{prefix}.{index}");
                g.node(&name, Op::Layer { layer }, &[input]);
                index += 1 + (layer.activation() != super::Activation::Identity) as usize;
                *input = name;
            }
        };
        stack(&mut g, "encoder", &config.encoder, &mut input);
        g.node("heads", Op::Heads { latent: config.latent }, &[&input]);
        g.node("z", Op::Gaussian {}, &["heads"]);
        input = "z".into();
        stack(&mut g, "decoder", &config.decoder, &mut input);
        Ok(Graph { nodes: g.nodes, output: input })
    }

    /// The `hvae` preset on 28 x 28 digits, after NVAE: a bottom-up encoder down to a residual
    /// cell at 7 x 7, a top group of 20 latents with prior N(0, I), and a spatial group of
    /// 8 x 7 x 7 whose prior comes from the top-down path and whose posterior adds the encoder's
    /// 7 x 7 features to that path's state; SiLU throughout, pre-activation cells (the
    /// residual stream itself is not activated), a Bernoulli decoder's logits out. (Cells at
    /// 14 x 14 as well cost 36% more per step on the CPU path and, in 30 minutes of training,
    /// gave a worse model: 96.34 nats after 35 epochs.)
    pub fn hvae() -> Graph {
        let mut g = Builder::default();
        let conv = |out, kernel, stride, padding| Op::Layer { layer: Layer::Conv2d { out, kernel, stride, padding, activation: super::Activation::Identity } };
        let up = |out| Op::Layer { layer: Layer::ConvTranspose2d { out, kernel: 4, stride: 2, padding: 1, activation: super::Activation::Identity } };
        let linear = |out| Op::Layer { layer: Layer::linear(out, super::Activation::Identity) };
        // Bottom-up.
        g.node("encoder.stem", conv(32, 4, 2, 1), &["x"]);
        g.node("encoder.act14", Op::Silu {}, &["encoder.stem"]);
        g.node("encoder.down", conv(64, 4, 2, 1), &["encoder.act14"]);
        let e7 = g.cell("encoder.cell7", "encoder.down", 64);
        g.node("encoder.act7", Op::Silu {}, &[&e7]);
        g.node("encoder.flatten", Op::Layer { layer: Layer::Flatten {} }, &["encoder.act7"]);
        g.node("encoder.dense", linear(256), &["encoder.flatten"]);
        g.node("encoder.act", Op::Silu {}, &["encoder.dense"]);
        // The top group, then top-down.
        g.node("q1", linear(40), &["encoder.act"]);
        g.node("z1", Op::Gaussian {}, &["q1"]);
        g.node("decoder.input", linear(64 * 7 * 7), &["z1"]);
        g.node("decoder.view", Op::Layer { layer: Layer::Reshape { shape: [64, 7, 7] } }, &["decoder.input"]);
        let s7 = g.cell("decoder.cell7a", "decoder.view", 64);
        // The spatial group: its prior from the state, its posterior from state + features.
        g.node("p2.act", Op::Silu {}, &[&s7]);
        g.node("p2", conv(16, 3, 1, 1), &["p2.act"]);
        g.node("q2.input", Op::Add {}, &[&s7, &e7]);
        g.node("q2.act", Op::Silu {}, &["q2.input"]);
        g.node("q2", conv(16, 3, 1, 1), &["q2.act"]);
        g.node("z2", Op::Gaussian {}, &["p2", "q2"]);
        g.node("decoder.z2", conv(64, 3, 1, 1), &["z2"]);
        g.node("decoder.merge", Op::Add {}, &[&s7, "decoder.z2"]);
        let d7 = g.cell("decoder.cell7b", "decoder.merge", 64);
        g.node("decoder.act7", Op::Silu {}, &[&d7]);
        g.node("decoder.up", up(32), &["decoder.act7"]);
        g.node("decoder.act14", Op::Silu {}, &["decoder.up"]);
        g.node("decoder.out", up(1), &["decoder.act14"]);
        Graph { nodes: g.nodes, output: "decoder.out".into() }
    }
}

/// Appends nodes, for the presets.
#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
}

impl Builder {
    fn node(&mut self, name: &str, op: Op, inputs: &[&str]) {
        self.nodes.push(Node { name: name.into(), op, inputs: inputs.iter().map(|s| s.to_string()).collect() });
    }

    /// A residual cell on `input`: input + conv(silu(conv(silu(input)))), 3 x 3 convolutions
    /// keeping `channels` and the size. Returns the sum's name, `name` itself.
    fn cell(&mut self, name: &str, input: &str, channels: usize) -> String {
        let conv = Op::Layer { layer: Layer::Conv2d { out: channels, kernel: 3, stride: 1, padding: 1, activation: super::Activation::Identity } };
        let part = |p: &str| format!("{name}.{p}");
        self.node(&part("act1"), Op::Silu {}, &[input]);
        self.node(&part("conv1"), conv, &[&part("act1")]);
        self.node(&part("act2"), Op::Silu {}, &[&part("conv1")]);
        self.node(&part("conv2"), conv, &[&part("act2")]);
        self.node(name, Op::Add {}, &[input, &part("conv2")]);
        name.into()
    }
}

impl GraphLayout {
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Which nodes a pass computes to reach the output, given how it gets each group's z (top
    /// group first; `Draw::mode`): drawn from the posterior, a group reads its prior and the
    /// encoder's shift; from the prior, its prior only (sampling skips the encoder); given, it
    /// reads nothing (the layers above it are not run unless another group needs them).
    pub fn needed(&self, draws: &[Option<Mode>]) -> Vec<bool> {
        self.needed_for(&[self.output], draws)
    }

    /// What the top group's posterior needs: its inputs (its prior's and the encoder's shift)
    /// and what they read, up the bottom-up path, and no further (`encode`).
    pub fn needed_to_encode(&self) -> Vec<bool> {
        self.needed_for(&self.nodes[self.groups[0]].inputs, &vec![Some(Mode::PosteriorMean); self.groups.len()])
    }

    /// `needed`, to reach the nodes `roots` rather than the output.
    pub fn needed_for(&self, roots: &[usize], draws: &[Option<Mode>]) -> Vec<bool> {
        assert_eq!(draws.len(), self.groups.len(), "one draw per group");
        let mut needed = vec![false; self.nodes.len()];
        for &root in roots {
            needed[root] = true;
        }
        for i in (0..self.nodes.len()).rev() {
            if !needed[i] {
                continue;
            }
            let p = &self.nodes[i];
            let reads = match p.group.map(|(group, _)| draws[group]) {
                None => &p.inputs[..],
                Some(None) => &[][..],
                Some(Some(Mode::Prior | Mode::PriorMean)) => &p.inputs[..p.inputs.len() - 1],
                Some(Some(Mode::Posterior | Mode::PosteriorMean)) => &p.inputs[..],
            };
            for &j in reads {
                needed[j] = true;
            }
        }
        needed
    }
}

/// How a pass gets a group's z: drawn by `ops::gaussian`'s kernels (from the posterior or the
/// prior, or at their means), or given by the caller (a code to decode, or one group kept while
/// another is redrawn).
#[derive(Clone, Debug, PartialEq)]
pub enum Draw {
    Sample(Mode),
    /// z [rows, n] of the group.
    Given(Vec<f32>),
}

impl Draw {
    /// The mode the kernels draw in; None for a given z.
    pub fn mode(&self) -> Option<Mode> {
        match self {
            Draw::Sample(mode) => Some(*mode),
            Draw::Given(_) => None,
        }
    }
}

/// What a variation of a datapoint keeps (`backend::GraphBackend::variations`): the top group
/// (the lower ones redrawn from their conditional priors), or the lower groups (the top one
/// redrawn from N(0, I)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Top,
    Lower,
}
