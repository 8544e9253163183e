//! Seeded mutation testing of every parser that reads users' files: thousands of IDX files,
//! file sets and checkpoints, each a valid file with a few random changes (bits flipped, bytes
//! set to edge values, cut short, bytes inserted, ranges deleted or repeated, digits in a JSON
//! header changed). Every one must be refused with an error or accepted as something
//! consistent, never panic, and never allocate much more than the input's own size (for gzip,
//! twice what it really decompresses to, or 64 times its compressed size). Every
//! checkpoint accepted must save back to a file that loads to the same parameters.
#![cfg(not(target_arch = "wasm32"))]

use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use webvae::checkpoint;
use webvae::data::{datasets_from_files, parse_idx, Dataset};
use webvae::model::{initial_parameters, Config, LatentType, Layout, Likelihood};
use webvae::rng::Rng;

mod peak;

const ROUNDS: u32 = 3000;
/// Allocations any parse may make whatever its input: error strings, small tables, and a gzip
/// decoder's state (its 32 KB window and buffers, about 75 KB).
const SLACK: usize = 256 * 1024;

fn below(rng: &mut Rng, n: usize) -> usize {
    ((rng.next_u32() as u64 * n as u64) >> 32) as usize
}

/// `bytes` with one to four random mutations.
fn mutate(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    const EDGES: &[u8] = b"\x00\x01\x7f\x80\xff\"{},:[]-0123456789e";
    let mut v = bytes.to_vec();
    for _ in 0..1 + below(rng, 4) {
        let at = below(rng, v.len() + 1);
        match below(rng, 7) {
            0 if at < v.len() => v[at] ^= 1 << below(rng, 8),
            1 if at < v.len() => v[at] = EDGES[below(rng, EDGES.len())],
            2 => v.truncate(at),
            3 => {
                let n = 1 + below(rng, 8);
                let junk: Vec<u8> = (0..n).map(|_| rng.next_u32() as u8).collect();
                v.splice(at..at, junk);
            }
            4 => {
                let end = (at + 1 + below(rng, 16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            5 if !v.is_empty() => {
                let from = below(rng, v.len());
                let end = (from + 1 + below(rng, 32)).min(v.len());
                let piece = v[from..end].to_vec();
                v.splice(at..at, piece);
            }
            // A digit for another: keeps JSON valid while changing numbers (offsets, shapes,
            // the step, sizes in the configuration).
            _ => {
                let digits: Vec<usize> = v.iter().enumerate().filter(|(_, b)| b.is_ascii_digit()).map(|(i, _)| i).collect();
                if !digits.is_empty() {
                    let i = digits[below(rng, digits.len())];
                    v[i] = b'0' + below(rng, 10) as u8;
                }
            }
        }
    }
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// What a (possibly gzipped, possibly broken) file decompresses to, at most 64 MB: the size
/// a parser may legitimately hold.
fn unpacked_len(bytes: &[u8]) -> usize {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return bytes.len();
    }
    let mut out = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(bytes).take(64 << 20).read_to_end(&mut out);
    out.len().max(bytes.len())
}

fn idx(magic_rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, magic_rank];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(data);
    v
}

/// Runs `f`, failing the test with `what` if it panics or holds more than `limit` bytes at once.
fn guarded<T>(what: &str, limit: usize, f: impl FnOnce() -> T) -> T {
    let (out, peak) = peak::peak_bytes(|| catch_unwind(AssertUnwindSafe(f)));
    let out = out.unwrap_or_else(|_| panic!("{what}: the parser panicked"));
    assert!(peak <= limit, "{what}: held {peak} bytes at once, more than {limit}");
    out
}

fn check_dataset(what: &str, d: &Dataset) {
    assert!(d.count > 0, "{what}: an empty dataset was accepted");
    assert_eq!(d.pixels.len(), d.count * d.rows * d.cols, "{what}: pixels");
    assert_eq!(d.labels.len(), d.count, "{what}: labels");
    assert!(d.labels.iter().all(|&l| l < 10), "{what}: a label outside 0-9 was accepted");
}

#[test]
fn mutated_idx_files_are_refused_or_read_consistently() {
    let mut rng = Rng::new(2026);
    let images = idx(3, &[7, 5, 4], &(0..140).map(|i| i as u8).collect::<Vec<_>>());
    let labels = idx(1, &[7], &[0, 1, 2, 3, 4, 5, 9]);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let (base, rank) = if round % 2 == 0 { (&images, 3) } else { (&labels, 1) };
        // Mutated raw, mutated then gzipped (the structure changes), gzipped then mutated (the
        // stream breaks).
        let file = match round % 3 {
            0 => mutate(&mut rng, base),
            1 => gzip(&mutate(&mut rng, base)),
            _ => mutate(&mut rng, &gzip(base)),
        };
        let what = format!("IDX round {round}");
        let limit = SLACK + 2 * (file.len() + unpacked_len(&file)) + 64 * file.len();
        match guarded(&what, limit, || parse_idx(&file, rank)) {
            Ok(parsed) => {
                accepted += 1;
                assert_eq!(parsed.dims.len(), rank as usize, "{what}");
                assert_eq!(parsed.data.len(), parsed.dims.iter().product::<usize>(), "{what}");
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty(), "{what}: an error without a message");
            }
        }
    }
    println!("mutated IDX files: {accepted} accepted, {refused} refused");
    assert!(accepted > 50 && refused > 1000, "the mutations should both keep and break files");
}

#[test]
fn mutated_file_sets_are_refused_or_make_consistent_datasets() {
    let mut rng = Rng::new(11);
    let names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte", "t10k-images.idx3", "t10k-labels", "a", "test", "b.gz"];
    let train_i = idx(3, &[6, 3, 3], &[9; 54]);
    let train_l = idx(1, &[6], &[0, 1, 2, 3, 4, 5]);
    let test_i = idx(3, &[2, 3, 3], &[4; 18]);
    let test_l = idx(1, &[2], &[7, 8]);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let mut files: Vec<(String, Vec<u8>)> = [&train_i, &train_l, &test_i, &test_l]
            .iter()
            .take(if round % 3 == 0 { 2 } else { 4 })
            .map(|f| (names[below(&mut rng, names.len())].to_string(), f.to_vec()))
            .collect();
        // Mutate one file's bytes (sometimes gzipped) and sometimes drop or repeat a file.
        let k = below(&mut rng, files.len());
        files[k].1 = mutate(&mut rng, &files[k].1);
        if round % 5 == 0 {
            files[k].1 = gzip(&files[k].1);
        }
        match round % 11 {
            0 => drop(files.pop()),
            1 => files.push(files[0].clone()),
            _ => {}
        }
        for i in (1..files.len()).rev() {
            files.swap(i, below(&mut rng, i + 1));
        }
        let max_image_bytes = if round % 7 == 0 { 60 } else { usize::MAX };
        let set: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        let what = format!("file set round {round}");
        let limit = SLACK + 4 * files.iter().map(|(_, b)| b.len() + unpacked_len(b)).sum::<usize>() + 64 * files.iter().map(|(_, b)| b.len()).sum::<usize>();
        match guarded(&what, limit, || datasets_from_files(&set, max_image_bytes)) {
            Ok((train, test)) => {
                accepted += 1;
                check_dataset(&what, &train);
                check_dataset(&what, &test);
                assert_eq!((train.rows, train.cols), (test.rows, test.cols), "{what}");
                assert!(train.pixels.len() + test.pixels.len() <= max_image_bytes, "{what}: over the device's limit");
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty(), "{what}: an error without a message");
            }
        }
    }
    println!("mutated file sets: {accepted} accepted, {refused} refused");
    assert!(accepted > 50 && refused > 1000, "the mutations should both keep and break file sets");
}

/// A convolutional model on 6x6 images: 1 -> 3 channels, dense 5, z2.
fn small_conv() -> Config {
    let arch = webvae::model::Architecture::Conv { channels: vec![3], dense: 5 };
    let (input, encoder, decoder) = arch.layers(6, 6, 1).unwrap();
    Config { input, encoder, decoder, latent: 2, ..Config::default() }
}

#[test]
fn mutated_checkpoints_are_refused_or_round_trip() {
    let mut rng = Rng::new(7);
    let configs = [
        Config::mlp(12, &[7, 5], 3),
        Config { likelihood: Likelihood::Gaussian { sigma: 0.5 }, ..Config::mlp(6, &[], 2) },
        small_conv(),
        small_conv().with_likelihood(Likelihood::gaussian_var()),
        Config { latent_type: LatentType::categorical(3), ..Config::mlp(12, &[7, 5], 3) },
    ];
    let mut files: Vec<Vec<u8>> = configs
        .iter()
        .map(|c| {
            let layout = Layout::new(c);
            checkpoint::save(c, &layout, &initial_parameters(c, &layout, None), 42)
        })
        .collect();
    // And one carrying Adam's state.
    let layout = Layout::new(&configs[0]);
    let params = initial_parameters(&configs[0], &layout, None);
    let state = checkpoint::OptimizerState { m: params.iter().map(|p| p * 0.1).collect(), v: params.iter().map(|p| p * p).collect(), step: 9 };
    files.push(checkpoint::save_with_optimizer(&configs[0], &layout, &params, 42, Some(&state)));
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let base = &files[round as usize % files.len()];
        // Mostly the header (where the structure is), sometimes anywhere.
        let file = if round % 4 == 0 {
            mutate(&mut rng, base)
        } else {
            let n = 8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
            let header = mutate(&mut rng, &base[8..n]);
            [&(header.len() as u64).to_le_bytes()[..], &header, &base[n..]].concat()
        };
        let what = format!("checkpoint round {round}");
        match guarded(&what, SLACK + 8 * file.len(), || checkpoint::load(&file)) {
            Ok(loaded) => {
                accepted += 1;
                let layout = Layout::new(&loaded.config);
                assert_eq!(loaded.parameters.len(), layout.len, "{what}");
                let again = checkpoint::load(&checkpoint::save_with_optimizer(&loaded.config, &layout, &loaded.parameters, loaded.step, loaded.optimizer.as_ref()))
                    .unwrap_or_else(|e| panic!("{what}: an accepted checkpoint does not load once saved again: {e}"));
                assert_eq!(again, loaded, "{what}: saving and loading again changed it");
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty(), "{what}: an error without a message");
            }
        }
    }
    println!("mutated checkpoints: {accepted} accepted, {refused} refused");
    assert!(accepted > 20 && refused > 1000, "the mutations should both keep and break checkpoints");
}
