//! q(z|x) and p(z): the family of the latent variables (Gaussian, or categorical with a
//! Gumbel-softmax temperature schedule).

use serde::{Deserialize, Serialize};

/// q(z|x) and p(z): the family of the latent variables. As JSON `{"kind": "gaussian"}` or
/// `{"kind": "categorical", "classes": 10, "tau_start": 1.0, "tau_floor": 0.5, "tau_rate": 0.001}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LatentType {
    /// `latent` Gaussian dimensions: q = N(mu, diag(exp(logvar))), p = N(0, I), and training
    /// decodes z = mu + exp(logvar / 2) eps (Kingma & Welling).
    Gaussian {},
    /// `latent` categorical variables of `classes` classes each, relaxed by Gumbel-softmax (Jang,
    /// Gu & Poole; Maddison et al.): the encoder gives latent x classes logits; training decodes
    /// y = softmax((logits + g) / tau) with Gumbel noise g, tau = max(tau_floor, tau_start
    /// exp(-tau_rate step)); p is uniform and the KL is analytic on the class probabilities.
    /// Evaluation decodes one-hot samples (the discrete ELBO); reconstructions decode the class
    /// probabilities.
    Categorical { classes: usize, tau_start: f32, tau_floor: f32, tau_rate: f32 },
}

impl Default for LatentType {
    fn default() -> Self {
        LatentType::Gaussian {}
    }
}

impl LatentType {
    /// Categorical latents of `classes` classes with the default schedule: tau from 1 down to its
    /// floor 0.5 in about 700 steps (10 epochs of the bundled digits at batch 128).
    pub fn categorical(classes: usize) -> LatentType {
        LatentType::Categorical { classes, tau_start: 1.0, tau_floor: 0.5, tau_rate: 1e-3 }
    }

    /// Classes per variable (None for Gaussian latents).
    pub fn classes(self) -> Option<usize> {
        match self {
            LatentType::Gaussian {} => None,
            LatentType::Categorical { classes, .. } => Some(classes),
        }
    }

    /// The length of one code z, the decoder's input: `latent` values, or `latent` one-hot
    /// (relaxed: probability) vectors of `classes`.
    pub fn code_len(self, latent: usize) -> usize {
        latent * self.classes().unwrap_or(1)
    }

    /// Outputs of the encoder's heads: mu and log-variance, or the logits.
    pub fn head_len(self, latent: usize) -> usize {
        match self {
            LatentType::Gaussian {} => 2 * latent,
            LatentType::Categorical { classes, .. } => latent * classes,
        }
    }

    /// The Gumbel-softmax temperature at training step `step` (as the kernel computes it, in f32).
    pub fn temperature(self, step: u32) -> f32 {
        match self {
            LatentType::Gaussian {} => 1.0,
            LatentType::Categorical { tau_start, tau_floor, tau_rate, .. } => tau_floor.max(tau_start * (-tau_rate * step as f32).exp()),
        }
    }
}
