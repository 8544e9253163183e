//! Models as graphs of named nodes (`model::Graph`): shapes inferred and checked with errors
//! that name the node, the `hvae` preset's shapes and parameters, and the graph oracle's
//! gradients against finite differences on a small hierarchy that uses every node kind.
#![cfg(not(target_arch = "wasm32"))]

use webvae::model::{Graph, Likelihood, Shape};
use webvae::ops::gaussian::Mode;
use webvae::reference::graph as oracle;
use webvae::rng::Rng;

mod common;

const IMAGE: Shape = Shape::Image { channels: 1, height: 8, width: 8 };

#[test]
fn graph_oracle_matches_finite_differences() {
    let g = common::small_hierarchy().layout(IMAGE).unwrap();
    assert_eq!(g.groups.len(), 2);
    assert_eq!((g.nodes[g.groups[0]].output, g.nodes[g.groups[1]].output), (Shape::Flat(3), Shape::Image { channels: 2, height: 4, width: 4 }));
    let mut rng = Rng::new(3);
    let params: Vec<f64> = (0..g.len).map(|_| rng.range(-0.4, 0.4) as f64).collect();
    let rows = 2;
    let x: Vec<f64> = (0..rows * 64).map(|_| rng.uniform() as f64).collect();
    let (lik, weights) = (Likelihood::Bernoulli, [0.7, 1.3]);
    let loss = |p: &[f64]| {
        let pass = oracle::forward(&g, p, Some(&x), rows, Mode::Posterior, 5, 2);
        let kl = pass.kl(&g);
        pass.reconstruction(&g, &x, lik).iter().sum::<f64>() + (0..2).map(|l| weights[l] * kl[l].iter().sum::<f64>()).sum::<f64>()
    };
    let pass = oracle::forward(&g, &params, Some(&x), rows, Mode::Posterior, 5, 2);
    let grads = oracle::backward(&g, &params, &pass, &x, lik, &weights, 1.0);
    for t in &g.tensors {
        assert!(t.range().any(|i| grads[i] != 0.0), "{}: all-zero gradient", t.name);
    }
    for i in 0..params.len() {
        let h = 1e-5;
        let mut p = params.clone();
        p[i] += h;
        let up = loss(&p);
        p[i] -= 2.0 * h;
        let numeric = (up - loss(&p)) / (2.0 * h);
        let name = &g.tensors.iter().find(|t| t.range().contains(&i)).unwrap().name;
        assert!((grads[i] - numeric).abs() <= 1e-6 + 1e-5 * numeric.abs(), "{name} (parameter {i}): analytic {} vs finite difference {numeric}", grads[i]);
    }
}

#[test]
fn sampling_runs_the_top_down_path_alone() {
    let g = common::small_hierarchy().layout(IMAGE).unwrap();
    let needed = g.needed(&[Some(Mode::Prior); 2]);
    for (p, &n) in g.nodes.iter().zip(&needed) {
        let encoder = p.name == "x" || p.name.starts_with("e.") || p.name.starts_with("q");
        assert_eq!(n, !encoder, "{}: needed {n} from the prior", p.name);
    }
    assert!(g.needed(&[Some(Mode::Posterior); 2]).iter().all(|&n| n));
    let params = vec![0.1; g.len];
    let pass = oracle::forward(&g, &params, None, 3, Mode::Prior, 1, 1);
    assert_eq!(pass.values[g.output].len(), 3 * 64);
    assert!(pass.values[g.output].iter().all(|v| v.is_finite()));
}

/// `encode` runs the bottom-up path to the top group's heads and nothing else: no group is
/// drawn and no decoder layer runs.
#[test]
fn encoding_runs_the_bottom_up_path_alone() {
    let g = Graph::hvae().layout(Shape::Image { channels: 1, height: 28, width: 28 }).unwrap();
    let needed = g.needed_to_encode();
    for (p, &n) in g.nodes.iter().zip(&needed) {
        let bottom_up = p.name == "x" || p.name.starts_with("encoder.") || p.name == "q1";
        // The encoder's 7x7 features feed z2's posterior too, but not through anything above them.
        assert_eq!(n, bottom_up, "{}: needed {n} to encode", p.name);
    }
}

#[test]
fn hvae_preset_has_its_shapes_and_names() {
    let g = Graph::hvae().layout(Shape::Image { channels: 1, height: 28, width: 28 }).unwrap();
    let shape = |name: &str| g.nodes.iter().find(|p| p.name == name).unwrap().output;
    assert_eq!(shape("z1"), Shape::Flat(20));
    assert_eq!(shape("z2"), Shape::Image { channels: 8, height: 7, width: 7 });
    assert_eq!(g.nodes[g.output].output, Shape::Image { channels: 1, height: 28, width: 28 });
    assert_eq!(g.tensor("encoder.stem.weight").unwrap().shape, [32, 1, 4, 4]);
    assert_eq!(g.tensor("decoder.out.weight").unwrap().shape, [32, 1, 4, 4]);
    assert_eq!(g.tensor("q2.weight").unwrap().shape, [16, 64, 3, 3]);
    println!("hvae: {} nodes, {} tensors, {} parameters", g.nodes.len(), g.tensors.len(), g.len);
    assert!((1_000_000..2_000_000).contains(&g.len), "{} parameters", g.len);
    // A training step at batch 128 fits WebGPU's default limits in both kernel shapes.
    let limit = wgpu::Limits::default().max_storage_buffer_binding_size as usize;
    for shape in webvae::kernels::KernelShape::ALL {
        let bytes = webvae::trainer::graph::step_memory(&g, 128, shape);
        println!("hvae at batch 128 ({} kernels): {:.1} MiB of activations and gradients, of the {} MiB a binding may hold", shape.name(), bytes as f64 / (1 << 20) as f64, limit >> 20);
        assert!(bytes <= limit, "{bytes} bytes");
    }
}

#[test]
fn graph_errors_name_the_node() {
    let err = |edit: &dyn Fn(&mut Graph)| {
        let mut g = common::small_hierarchy();
        edit(&mut g);
        g.layout(IMAGE).unwrap_err().to_string()
    };
    let node = |g: &mut Graph, name: &str| g.nodes.iter().position(|n| n.name == name).unwrap();
    let cases: [(&dyn Fn(&mut Graph), &str); 7] = [
        (&|g| { let i = node(g, "q2.in"); g.nodes[i].inputs[1] = "e.flat".into() }, "graph: node q2.in (add): its inputs d.view (4x4x4) and e.flat (64) differ in shape"),
        (&|g| { let i = node(g, "e.act"); g.nodes[i].inputs[0] = "d.merge".into() }, "graph: node e.act (silu): reads \"d.merge\", which no node before it defines"),
        (&|g| { let i = node(g, "z1"); g.nodes[i].inputs.clear() }, "graph: node z1 (gaussian): takes 1 or 2 inputs, got 0"),
        (&|g| { let i = node(g, "p2"); g.nodes[i].name = "e.stem".into() }, "graph: node e.stem (conv2d): the name is taken"),
        (&|g| { let i = node(g, "z2"); g.nodes[i].inputs = vec!["q2".into(), "e.flat".into()] }, "graph: node z2 (gaussian): its prior q2 (4x4x4) and posterior e.flat (64) differ in shape"),
        (&|g| g.output = "d.act".into(), "graph: node d.out (conv_transpose2d) is computed but no node reads it"),
        (&|g| { let i = node(g, "e.dense"); g.nodes[i].inputs[0] = "e.act".into() }, "graph: node e.dense (linear): on e.act (4x4x4): linear needs a flat input"),
    ];
    for (edit, want) in cases {
        let got = err(edit);
        assert!(got.starts_with(want), "got \"{got}\", want \"{want}…\"");
    }
    let mut odd = common::small_hierarchy();
    let i = odd.nodes.iter().position(|n| n.name == "q1").unwrap();
    odd.nodes[i].op = serde_json::from_value(serde_json::json!({"type": "layer", "layer": {"type": "linear", "out": 5, "activation": "identity"}})).unwrap();
    let got = odd.layout(IMAGE).unwrap_err().to_string();
    assert!(got.starts_with("graph: node z1 (gaussian): q1 (5) must hold means then log-variances"), "{got}");
}

#[test]
fn cpu_path_graph_matches_oracle() {
    pollster::block_on(common::cpu_graph_parity(|s| println!("{s}")));
}

#[test]
fn cpu_path_trains_a_hierarchy_as_the_oracle_does() {
    pollster::block_on(common::graph_training_parity(|s| println!("{s}"), webvae::backend::Device::Cpu));
}

/// The layer-stack presets expressed as graphs (`Graph::from_config`): the same tensors (names,
/// shapes, offsets), the same initial weights, and the graph oracle computes what the stacks'
/// oracle computes, the decoder's output, the KL and every gradient, with the same noise.
#[test]
fn the_presets_are_graphs_with_their_own_tensors_and_math() {
    use webvae::model::{initial_graph_parameters, initial_parameters, Config, Layout};
    use webvae::reference;
    let close = |what: &str, got: &[f64], want: &[f64]| {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-9 * scale, "{what}: differs by {worst:e} (largest value {scale:e})");
    };
    for name in ["mlp", "conv", "mlp-gauss-var", "conv-gauss-var"] {
        let config = Config::preset(name).unwrap();
        let layout = Layout::new(&config);
        let g = Graph::from_config(&config).unwrap().layout(config.input).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(g.tensors, layout.tensors, "{name}: tensors");
        assert_eq!(g.len, layout.len);
        let mut rng = Rng::new(8);
        let mean = rng.vec(config.pixels(), 0.0, 1.0);
        let initial = initial_parameters(&config, &layout, Some(&mean));
        assert_eq!(initial_graph_parameters(&g, config.seed, config.likelihood, &mean), initial, "{name}: initial weights");

        let (rows, step) = (3, 5);
        let params = common::f64s(&initial);
        let x = common::f64s(&rng.vec(rows * config.pixels(), 0.0, 1.0));
        let fwd = reference::forward(&config, &layout, &params, &x, &reference::step_eps(&config, step, rows), step);
        let pass = oracle::forward(&g, &params, Some(&x), rows, Mode::Posterior, config.seed, step);
        close(&format!("{name}: decoder output"), &pass.values[g.output], fwd.decoder.last().unwrap());
        close(&format!("{name}: KL"), &pass.kl(&g)[0], &fwd.kl);
        let (want, _) = reference::backward(&config, &layout, &params, &x, &fwd);
        let got = oracle::backward(&g, &params, &pass, &x, config.likelihood, &[config.beta as f64], 1.0 / rows as f64);
        close(&format!("{name}: gradients"), &got, &want);
        println!("{name}: {} nodes, {} tensors and {} parameters as the stack places them; the graph oracle's output, KL and gradients match the stack's", g.nodes.len(), g.tensors.len(), g.len);
    }
    let categorical = Graph::from_config(&Config::preset("mlp-categorical").unwrap()).unwrap_err().to_string();
    assert!(categorical.contains("categorical latents are not a graph node yet"), "{categorical}");
}

#[test]
fn the_mlp_preset_trains_as_a_graph_on_the_cpu_path() {
    pollster::block_on(common::preset_trains_as_a_graph(|s| println!("{s}"), webvae::backend::Device::Cpu));
}

#[test]
fn a_graph_model_resumes_exactly_on_the_cpu_path() {
    pollster::block_on(common::graph_resumes_exactly(|s| println!("{s}"), webvae::backend::Device::Cpu));
}
