//! The IDX reader on real files (the bundled MNIST subset, Debian's Fashion-MNIST) and on
//! hand-made broken ones: every malformed input is a specific error, never a panic.
#![cfg(not(target_arch = "wasm32"))]

use std::io::Write;

use webvae::data::{bundled_mnist, epoch_permutation, parse_idx, DataError, Dataset};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn images_idx(count: u32, rows: u32, cols: u32, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend(d.to_be_bytes());
    }
    v.extend(data);
    v
}

fn labels_idx(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend((labels.len() as u32).to_be_bytes());
    v.extend(labels);
    v
}

#[test]
fn bundled_mnist_has_the_documented_split() {
    let (train, test) = bundled_mnist().unwrap();
    assert_eq!((train.count, test.count), (9000, 1000));
    assert_eq!((train.rows, train.cols), (28, 28));
    let per_class = |d: &Dataset| (0..10).map(|c| d.labels.iter().filter(|&&l| l == c).count()).collect::<Vec<_>>();
    assert_eq!(per_class(&train), [901, 1014, 892, 929, 882, 777, 912, 963, 850, 880]);
    assert_eq!(per_class(&test), [100, 113, 99, 103, 98, 86, 102, 107, 94, 98]);
    // Real digits: mostly background, some full ink.
    let mean = train.pixels.iter().map(|&p| p as f64).sum::<f64>() / train.pixels.len() as f64 / 255.0;
    assert!((0.08..0.2).contains(&mean), "mean pixel {mean}");
}

#[test]
fn reads_debian_fashion_mnist_gzipped_and_raw() {
    let read = |name: &str| {
        std::fs::read(format!("{FASHION}/{name}")).unwrap_or_else(|e| {
            panic!("{FASHION}/{name}: {e}; install Debian's dataset-fashion-mnist (make setup does)")
        })
    };
    let test = Dataset::from_idx(&read("t10k-images-idx3-ubyte.gz"), &read("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!((test.count, test.rows, test.cols), (10_000, 28, 28));
    assert!(test.labels.iter().all(|&l| l < 10));
    let train = Dataset::from_idx(&read("train-images-idx3-ubyte.gz"), &read("train-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(train.count, 60_000);
    // The same file uncompressed parses to the same thing.
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&read("t10k-labels-idx1-ubyte.gz")[..]),
        &mut raw,
    )
    .unwrap();
    assert_eq!(parse_idx(&raw, 1).unwrap().data, test.labels);
}

#[test]
fn malformed_files_get_specific_errors() {
    let good_images = images_idx(2, 2, 2, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let good_labels = labels_idx(&[3, 4]);
    assert!(Dataset::from_idx(&good_images, &good_labels).is_ok());
    assert!(Dataset::from_idx(&gzip(&good_images), &gzip(&good_labels)).is_ok());

    let cases: Vec<(&str, Vec<u8>, u8, fn(&DataError) -> bool)> = vec![
        ("empty", vec![], 3, |e| *e == DataError::Empty),
        ("short magic", vec![0, 0], 3, |e| matches!(e, DataError::TruncatedHeader { .. })),
        ("png, not idx", b"\x89PNG\r\n\x1a\n....".to_vec(), 3, |e| matches!(e, DataError::BadMagic { .. })),
        ("float elements", { let mut v = good_images.clone(); v[2] = 0x0d; v }, 3,
            |e| *e == DataError::NotBytes { type_code: 0x0d }),
        ("labels given as images", good_labels.clone(), 3, |e| *e == DataError::WrongRank { expected: 3, found: 1 }),
        ("header cut short", good_images[..10].to_vec(), 3, |e| matches!(e, DataError::TruncatedHeader { needed: 16, .. })),
        ("data truncated", good_images[..20].to_vec(), 3,
            |e| *e == DataError::SizeMismatch { header_bytes: 8, found: 4 }),
        ("trailing bytes", [good_images.clone(), vec![0]].concat(), 3, |e| matches!(e, DataError::SizeMismatch { .. })),
        ("absurd counts", images_idx(u32::MAX, u32::MAX, u32::MAX, &[1, 2, 3]), 3,
            |e| matches!(e, DataError::SizeMismatch { .. })),
        ("zero images", images_idx(0, 28, 28, &[]), 3, |e| *e == DataError::ZeroSize),
        ("broken gzip", { let mut g = gzip(&good_images); g.truncate(g.len() / 2); g }, 3,
            |e| matches!(e, DataError::Gzip(_))),
    ];
    for (what, bytes, rank, expected) in cases {
        match parse_idx(&bytes, rank) {
            Err(e) => {
                assert!(expected(&e), "{what}: unexpected error {e:?}");
                assert!(!e.to_string().is_empty());
            }
            Ok(idx) => panic!("{what}: parsed as {:?}", idx.dims),
        }
    }
    assert_eq!(
        Dataset::from_idx(&good_images, &labels_idx(&[1, 2, 3])),
        Err(DataError::CountMismatch { images: 2, labels: 3 })
    );
}

#[test]
fn a_gzip_bomb_is_refused_without_exhausting_memory() {
    // 600 MB of zeros compress to about 600 KB.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..600 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(matches!(parse_idx(&bomb, 3), Err(DataError::TooLarge { .. })));
}

#[test]
fn epoch_permutations_are_seeded_permutations() {
    let p = epoch_permutation(1000, 1, 0);
    let mut sorted = p.clone();
    sorted.sort();
    assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
    assert_eq!(p, epoch_permutation(1000, 1, 0));
    assert_ne!(p, epoch_permutation(1000, 1, 1));
    assert_ne!(p, epoch_permutation(1000, 2, 0));
}
