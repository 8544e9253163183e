//! The latent-space helpers the page draws with, against closed forms and the oracle.
#![cfg(not(target_arch = "wasm32"))]

use webvae::latent::{dimensions_by_use, kl_per_dimension, manifold_codes, normal_quantile, prior_quantiles, traversal_codes};

#[test]
fn normal_quantile_matches_known_values() {
    for (p, z) in [(0.5, 0.0), (0.975, 1.959963984540054), (0.025, -1.959963984540054), (0.999, 3.090232306167813), (1e-6, -4.753424308822899)] {
        assert!((normal_quantile(p) - z).abs() < 1e-8, "Phi^-1({p}) = {} not {z}", normal_quantile(p));
    }
    let q = prior_quantiles(5);
    assert_eq!(q[2], 0.0);
    assert!(q.windows(2).all(|w| w[0] < w[1]));
    assert!((q[0] + q[4]).abs() < 1e-7, "symmetric");
}

#[test]
fn traversals_and_manifolds_vary_only_their_dimensions() {
    let code = [0.5f32, -1.0, 2.0];
    let t = traversal_codes(&code, &[2, 0], 4);
    assert_eq!(t.len(), 2 * 4 * 3);
    let q = prior_quantiles(4);
    for (i, row) in t.chunks(3).enumerate() {
        let d = [2, 0][i / 4];
        for j in 0..3 {
            assert_eq!(row[j], if j == d { q[i % 4] } else { code[j] });
        }
    }
    let m = manifold_codes(&code, 0, 2, 3);
    let q = prior_quantiles(3);
    assert_eq!(m.len(), 9 * 3);
    // Row-major, x increasing rightwards, y decreasing downwards; dimension 1 untouched.
    assert_eq!(&m[..3], &[q[0], -1.0, q[2]]);
    assert_eq!(&m[m.len() - 3..], &[q[2], -1.0, q[0]]);
}

#[test]
fn kl_per_dimension_sums_to_the_oracle_kl() {
    let (n, z) = (5, 4);
    let mu: Vec<f32> = (0..n * z).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut logvar: Vec<f32> = (0..n * z).map(|i| (i as f32 * 0.11).cos() - 0.5).collect();
    // Dimension 3 unused: q(z_3|x) is the prior.
    for r in 0..n {
        logvar[r * z + 3] = 0.0;
    }
    let mut mu = mu;
    for r in 0..n {
        mu[r * z + 3] = 0.0;
    }
    let kl = kl_per_dimension(&mu, &logvar, z);
    let ml: Vec<f64> = (0..n).flat_map(|r| mu[r * z..(r + 1) * z].iter().chain(&logvar[r * z..(r + 1) * z]).map(|&v| v as f64).collect::<Vec<_>>()).collect();
    let want: f64 = webvae::ops::latent::kl(&ml, n, z).iter().sum::<f64>() / n as f64;
    assert!((kl.iter().sum::<f64>() - want).abs() < 1e-9);
    assert_eq!(kl[3], 0.0);
    assert_eq!(*dimensions_by_use(&kl).last().unwrap(), 3);
}
