//! The model's configuration (an encoder and a decoder, each a list of layers, around the latent
//! heads), its shapes inferred and checked layer by layer, its parameter layout (one flat buffer
//! plus an offset table, PyTorch names) and its initialisation; and a model as a graph of named
//! nodes (`Graph`: the hierarchy of latents; `GraphConfig` with its schedule); one file per
//! concept.

mod activation;
mod architecture;
mod config;
mod graph;
mod graph_config;
mod latent_type;
mod layer;
mod layout;
mod likelihood;
mod shape;

pub use activation::Activation;
pub use architecture::Architecture;
pub use config::{Config, ConfigError};
pub use graph::{Draw, Graph, GraphLayout, Keep, Node, Op, Placed};
pub use graph_config::{GraphConfig, ModelConfig};
pub use latent_type::LatentType;
pub use layer::Layer;
pub use layout::{activation_before, initial_graph_parameters, initial_parameters, LayerLayout, Layout, Tensor};
pub use likelihood::{Likelihood, DEFAULT_VARIANCE_FLOOR};
pub use shape::Shape;

use config::bad;
