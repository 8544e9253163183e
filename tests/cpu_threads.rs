//! The CPU path on any number of threads: the same bits. Its work is split across rayon's pool
//! (products by rows, convolutions by datapoint or by tap, the loss by row, Adam by element)
//! without ever cutting a sum in two, so that a model trained on the page's threads and one
//! trained on one thread are the same model. Each preset (real sizes, so that every split
//! happens; three threads, so that the parts are uneven) trains, evaluates and decodes on one
//! thread and on three, and everything must agree to the bit.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use webvae::cpu::CpuTrainer;
use webvae::model::Config;

/// What a trainer computes: parameters, Adam's state, metrics, the test ELBO, the bound,
/// decoded prior samples and reconstructions, as bits.
fn run(config: &Config, threads: usize) -> Vec<(String, Vec<u64>)> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let (train, test) = common::small_mnist(640);
    pool.install(|| {
        pollster::block_on(async {
            let mut t = CpuTrainer::new(config.clone(), &train, &test).unwrap();
            t.train(3).unwrap();
            let metrics = t.metrics().await.unwrap();
            let evaluation = t.evaluate().await.unwrap();
            let bound = t.importance_weighted_nll(4).await.unwrap();
            let state = t.optimizer_state().await.unwrap();
            let images: Vec<f32> = (0..8).flat_map(|i| test.image(i)).collect();
            let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits() as u64).collect::<Vec<_>>();
            let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            vec![
                ("parameters".into(), bits32(&t.parameters().await.unwrap())),
                ("gradients".into(), bits32(&t.gradients().await.unwrap())),
                ("Adam's m".into(), bits32(&state.m)),
                ("Adam's v".into(), bits32(&state.v)),
                ("metrics".into(), bits64(&[metrics.loss, metrics.reconstruction, metrics.kl])),
                ("test ELBO".into(), bits64(&[evaluation.nelbo, evaluation.reconstruction, evaluation.kl])),
                ("importance-weighted bound".into(), bits64(&[bound])),
                ("decoded samples".into(), bits32(&t.decode(&t.prior_codes(8, 3)).await.unwrap())),
                ("reconstructions".into(), bits32(&t.reconstruct(&images).await.unwrap())),
            ]
        })
    })
}

#[test]
fn the_cpu_path_gives_the_same_bits_on_one_thread_and_on_three() {
    for name in ["mlp", "conv", "mlp-gauss-var", "conv-categorical"] {
        let config = Config::preset(name).unwrap();
        let (one, three) = (run(&config, 1), run(&config, 3));
        for ((what, a), (_, b)) in one.iter().zip(&three) {
            let differ = a.iter().zip(b).filter(|(x, y)| x != y).count();
            assert!(differ == 0 && a.len() == b.len(), "{name}: {what} differ in {differ} of {} values on 3 threads", a.len());
        }
        println!("{name}: 3 training steps, evaluation, bound, samples and reconstructions are the same bits on 1 and 3 threads");
    }
}

/// The hvae preset (a graph: residual cells, SiLU, two groups) the same way: parameters and
/// Adam's gradients after 3 steps, the metrics, the test ELBO, the bound and prior samples.
#[test]
fn the_hierarchy_gives_the_same_bits_on_one_thread_and_on_three() {
    use webvae::cpu::graph::GraphTrainer;
    use webvae::training::Schedule;
    let (train, test) = common::small_mnist(640);
    let schedule = Schedule { batch_size: 128, learning_rate: 2e-3, final_learning_rate: 1e-4, total_steps: 10, kl_warmup_steps: 5, seed: 1 };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut t = GraphTrainer::new(&webvae::model::Graph::hvae(), schedule.clone(), &train, &test).unwrap();
            t.train(3).unwrap();
            let m = pollster::block_on(t.metrics()).unwrap();
            let e = pollster::block_on(t.evaluate()).unwrap();
            let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits() as u64).collect::<Vec<_>>();
            let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            vec![
                ("parameters", bits32(&pollster::block_on(t.parameters()).unwrap())),
                ("metrics", bits64(&[[m.loss, m.reconstruction].as_slice(), &m.kl].concat())),
                ("test ELBO", bits64(&[[e.nelbo, e.reconstruction].as_slice(), &e.kl].concat())),
                ("importance-weighted bound", bits64(&[pollster::block_on(t.importance_weighted_nll(4)).unwrap()])),
                ("prior samples", bits32(&pollster::block_on(t.sample(8, 3, false)).unwrap())),
            ]
        })
    };
    let (one, three) = (run(1), run(3));
    for ((what, a), (_, b)) in one.iter().zip(&three) {
        let differ = a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert!(differ == 0 && a.len() == b.len(), "hvae: {what} differ in {differ} of {} values on 3 threads", a.len());
    }
    println!("hvae: 3 training steps, evaluation, bound and samples are the same bits on 1 and 3 threads");
}
