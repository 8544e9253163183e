//! What defines a graph model and how it trains (`GraphConfig`: the datapoint's shape, the
//! graph, the schedule), as a checkpoint stores it and the page sets it; and `ModelConfig`,
//! either kind of model (a layer stack's `Config`, or a graph's).

use serde::{Deserialize, Serialize};

use super::{bad, Config, ConfigError, Graph, GraphLayout, Shape};
use crate::training::Schedule;

/// A graph model: the datapoint's shape, its graph, and its schedule. As JSON (a checkpoint's
/// `graph` metadata) every field is required and unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    pub input: Shape,
    pub graph: Graph,
    pub schedule: Schedule,
}

/// The page's `hvae` schedule: training there has no planned end, so the learning rate stays
/// at the quality run's peak (2e-3, where `make quality` decays it along a cosine), and the
/// KL's weight rises over the first 150 steps (about two epochs of the bundled digits at batch
/// 128) so that the decoder learns to use both groups before the KL pulls them to their priors.
pub const HVAE_LEARNING_RATE: f32 = 2e-3;
pub const HVAE_KL_WARMUP_STEPS: u32 = 150;

impl GraphConfig {
    /// The `hvae` preset (`Graph::hvae`, 28 x 28 digits) as the page trains it.
    pub fn hvae() -> GraphConfig {
        GraphConfig {
            input: Shape::Image { channels: 1, height: 28, width: 28 },
            graph: Graph::hvae(),
            schedule: Schedule {
                batch_size: 128,
                learning_rate: HVAE_LEARNING_RATE,
                final_learning_rate: HVAE_LEARNING_RATE,
                total_steps: 0,
                kl_warmup_steps: HVAE_KL_WARMUP_STEPS,
                seed: 1,
            },
        }
    }

    /// The preset this graph is ("hvae"), if it is one: the page's settings show it by name.
    pub fn preset(&self) -> Option<&'static str> {
        let hvae = GraphConfig::hvae();
        (self.graph == hvae.graph && self.input == hvae.input).then_some("hvae")
    }

    /// The `hvae` preset with any of the schedule's fields (`batch_size`, `learning_rate`,
    /// `final_learning_rate`, `total_steps`, `kl_warmup_steps`, `seed`) from a JSON object, and
    /// the image size `[rows, cols]` as `image` (the preset takes 28 x 28); unknown fields are
    /// refused, naming them. `architecture` (`{"kind": "hvae"}`, how the page names it) is read
    /// by the caller. What every model's configuration says of its latents and likelihood
    /// (`latent`: the top group's size, `latent_type`, `likelihood`) may be given too, as long
    /// as it says what the hierarchy has: the page reads them of any model and gives them back.
    pub fn from_partial_json(mut partial: serde_json::Map<String, serde_json::Value>) -> Result<GraphConfig, ConfigError> {
        let mut config = GraphConfig::hvae();
        let layout = config.validate()?;
        let top = layout.nodes[layout.groups[0]].output.len();
        let own = [
            ("latent", serde_json::json!(top), format!("{top} (the top group's size)")),
            ("latent_type", serde_json::json!({ "kind": "gaussian" }), "Gaussian".into()),
            ("likelihood", serde_json::json!({ "kind": "bernoulli" }), "Bernoulli".into()),
        ];
        for (field, value, what) in own {
            match partial.remove(field) {
                Some(given) if given != value => return Err(bad(field, format!("the hierarchy's is {what}, its own: choose another architecture for other latents or likelihoods"))),
                _ => {}
            }
        }
        if let Some(image) = partial.remove("image") {
            let [rows, cols]: [usize; 2] = serde_json::from_value(image).map_err(|e| bad("image", e.to_string()))?;
            if (rows, cols) != (28, 28) {
                return Err(bad("architecture", format!("the hierarchy is built for 28x28 digits, not {rows}x{cols} images: choose the MLP or the convolutional model")));
            }
        }
        let serde_json::Value::Object(mut full) = serde_json::to_value(&config.schedule).expect("a Schedule serialises") else {
            unreachable!("a Schedule serialises to an object")
        };
        for (key, value) in partial {
            let Some(field) = full.get_mut(&key) else {
                return Err(bad("config", format!("unknown field \"{key}\" (the hierarchy takes batch_size, learning_rate, final_learning_rate, total_steps, kl_warmup_steps and seed)")));
            };
            *field = value;
        }
        config.schedule = serde_json::from_value(serde_json::Value::Object(full)).map_err(|e| bad("config", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The graph laid out on `input`, after checking the schedule (each error names its field).
    pub fn validate(&self) -> Result<GraphLayout, ConfigError> {
        let s = &self.schedule;
        if !(1..=4096).contains(&s.batch_size) {
            return Err(bad("batch_size", format!("must be 1..=4096, got {}", s.batch_size)));
        }
        for (field, rate) in [("learning_rate", s.learning_rate), ("final_learning_rate", s.final_learning_rate)] {
            if !(rate.is_finite() && rate > 0.0 && rate <= 1.0) {
                return Err(bad(field, format!("must be in (0, 1], got {rate}")));
            }
        }
        self.graph.layout(self.input)
    }

    /// The model in a line: input, each group of latents, output, e.g.
    /// "1x28x28 → 34 nodes (residual cells, SiLU) → z1 20 → z2 8x7x7 → 1x28x28 (Bernoulli logits)".
    pub fn summary(&self) -> String {
        let Ok(g) = self.graph.layout(self.input) else {
            return format!("{} → an invalid graph", self.input);
        };
        let groups = g.groups.iter().map(|&i| format!("{} {}", g.nodes[i].name, g.nodes[i].output));
        std::iter::once(format!("{} → graph of {} nodes", self.input, self.graph.nodes.len()))
            .chain(groups)
            .chain([format!("{} (Bernoulli logits)", g.nodes[g.output].output)])
            .collect::<Vec<_>>()
            .join(" → ")
    }
}

/// Either kind of model: a layer stack (`Config`), or a graph (`GraphConfig`).
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    Stack(Config),
    Graph(GraphConfig),
}
