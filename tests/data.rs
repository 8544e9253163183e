//! The IDX reader on real files (the bundled MNIST subset, Debian's Fashion-MNIST) and on
//! hand-made broken ones: every malformed input is a specific error, never a panic.
#![cfg(not(target_arch = "wasm32"))]

use std::io::Write;

use webvae::data::{bundled_mnist, centre_digit, datasets_from_files, epoch_permutation, parse_idx, DataError, Dataset};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

mod peak;

fn datasets_from_files_unlimited(files: &[(&str, &[u8])]) -> Result<(Dataset, Dataset), DataError> {
    datasets_from_files(files, usize::MAX)
}

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
            |e| matches!(e, DataError::TooLarge { .. })),
        ("counts beyond the data", images_idx(1000, 28, 28, &[1, 2, 3]), 3,
            |e| *e == DataError::SizeMismatch { header_bytes: 784_000, found: 3 }),
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

/// A gzipped stream: `header` followed by `zeros` zero bytes, compressed as well as gzip can.
fn gzip_zeros(header: &[u8], zeros: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(header).unwrap();
    let block = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(block.len());
        enc.write_all(&block[..n]).unwrap();
        left -= n;
    }
    enc.finish().unwrap()
}

#[test]
fn a_gzip_bomb_is_refused_without_exhausting_memory() {
    // A header promising 1,000,000 images of 28x28 (784 MB), then zeros: refused from the
    // header, before the rest is decompressed.
    let header = &images_idx(1_000_000, 28, 28, &[])[..];
    let bomb = gzip_zeros(header, 64 << 20);
    let (result, peak) = peak::peak_bytes(|| parse_idx(&bomb, 3));
    assert!(matches!(result, Err(DataError::TooLarge { .. })), "{result:?}");
    assert!(peak < 1 << 20, "refusing the bomb allocated {peak} bytes");
    // A header promising 1,000 images but a stream going on for 600 MB: decompression stops
    // one byte past the promise.
    let liar = gzip_zeros(&images_idx(1_000, 28, 28, &[]), 600 << 20);
    let (result, peak) = peak::peak_bytes(|| parse_idx(&liar, 3));
    assert!(matches!(result, Err(DataError::SizeMismatch { .. })), "{result:?}");
    assert!(peak < 4 * 784_000, "the liar cost {peak} bytes");
}

#[test]
fn a_large_gzipped_file_is_decompressed_once_without_a_second_copy() {
    // Fashion-MNIST's training images: 26 MB gzipped, 47 MB of pixels.
    let file = std::fs::read(format!("{FASHION}/train-images-idx3-ubyte.gz")).unwrap();
    let (idx, peak) = peak::peak_bytes(|| parse_idx(&file, 3).unwrap());
    let n = idx.data.len();
    assert_eq!(n, 60_000 * 784);
    assert!(peak < n + n / 20, "parsing {n} bytes of images took {peak} bytes at once (a second copy?)");
}

#[test]
fn a_highly_compressed_file_is_decompressed_into_exactly_its_size() {
    // 100,000 blank 28x28 images: 78 MB of pixels in a gzip of under 100 KB, far past the
    // compression that sizes a first guess; growing a buffer by doubling held 1.5x the data.
    let n = 100_000 * 784;
    let file = gzip_zeros(&images_idx(100_000, 28, 28, &[]), n);
    let (idx, peak) = peak::peak_bytes(|| parse_idx(&file, 3).unwrap());
    assert_eq!(idx.data.len(), n);
    assert!(peak < n + (1 << 20), "parsing {n} bytes of images took {peak} bytes at once");
}

#[test]
fn images_that_cannot_fit_the_device_are_refused_before_decompressing() {
    let images = gzip_zeros(&images_idx(60_000, 28, 28, &[]), 60_000 * 784);
    let labels = labels_idx(&vec![1; 60_000]);
    let files: [(&str, &[u8]); 2] = [("train-images", &images), ("train-labels", &labels)];
    // A device whose largest buffer holds 32 MB.
    let (result, peak) = peak::peak_bytes(|| datasets_from_files(&files, 32 << 20));
    let err = result.unwrap_err().to_string();
    assert!(err.contains("44 MB") && err.contains("32 MB"), "{err}");
    assert!(peak < 1 << 20, "refusing took {peak} bytes");
    assert!(datasets_from_files(&files, 64 << 20).is_ok());
}

#[test]
fn labels_outside_the_ten_classes_are_refused_up_front() {
    let images = images_idx(3, 2, 2, &[0; 12]);
    let err = Dataset::from_idx(&images, &labels_idx(&[1, 10, 3])).unwrap_err();
    assert_eq!(err, DataError::LabelOutOfRange { index: 1, label: 10 });
    assert!(err.to_string().contains("label 10 (item 1) is outside 0-9"), "{err}");
    let err = datasets_from_files_unlimited(&[("letters-images", &images), ("letters-labels", &labels_idx(&[0, 9, 26]))]).unwrap_err();
    assert!(err.to_string().starts_with("letters-labels: label 26"), "{err}");
}

#[test]
fn four_files_are_paired_by_name_where_counts_cannot_tell() {
    // Training and test sets of the same size: only the names can tell them apart.
    let (train_i, train_l) = (images_idx(3, 2, 2, &[1; 12]), labels_idx(&[1, 1, 1]));
    let (test_i, test_l) = (images_idx(3, 2, 2, &[2; 12]), labels_idx(&[2, 2, 2]));
    let files: [(&str, &[u8]); 4] = [
        ("t10k-labels-idx1-ubyte", &test_l),
        ("train-images-idx3-ubyte.gz", &train_i),
        ("mnist-test-images", &test_i),
        ("TRAIN-labels", &train_l),
    ];
    let (train, test) = datasets_from_files_unlimited(&files).unwrap();
    assert_eq!((train.pixels[0], train.labels[0]), (1, 1));
    assert_eq!((test.pixels[0], test.labels[0]), (2, 2));
    // Names that say nothing, same counts: refused, saying why and what to do.
    let files: [(&str, &[u8]); 4] = [("a", &test_l), ("b", &train_i), ("c", &test_i), ("d", &train_l)];
    let err = datasets_from_files_unlimited(&files).unwrap_err().to_string();
    assert!(err.contains("cannot tell which images go with which labels") && err.contains("t10k-"), "{err}");
    // Names win over counts: a test set larger than the training set stays the test set.
    let big_i = images_idx(5, 2, 2, &[3; 20]);
    let big_l = labels_idx(&[3; 5]);
    let files: [(&str, &[u8]); 4] = [("test-images", &big_i), ("test-labels", &big_l), ("train-images", &train_i), ("train-labels", &train_l)];
    let (train, test) = datasets_from_files_unlimited(&files).unwrap();
    assert_eq!((train.count, test.count), (3, 5));
    // Names that pair the wrong counts: the pair's counts disagree, and the message names both.
    let files: [(&str, &[u8]); 4] = [("test-images", &big_i), ("train-labels", &big_l), ("train-images", &train_i), ("test-labels", &train_l)];
    let err = datasets_from_files_unlimited(&files).unwrap_err().to_string();
    assert!(err.contains("train-images holds 3 images but train-labels holds 5 labels"), "{err}");
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

#[test]
fn user_files_are_recognised_in_any_order_and_paired_by_count() {
    let read = |name: &str| std::fs::read(format!("{FASHION}/{name}")).unwrap();
    let (ti, tl) = (read("t10k-images-idx3-ubyte.gz"), read("t10k-labels-idx1-ubyte.gz"));
    let (small_i, small_l) = (images_idx(3, 28, 28, &[7; 3 * 784]), labels_idx(&[1, 2, 3]));
    // Four files, shuffled: the larger pair trains.
    let (train, test) =
        datasets_from_files_unlimited(&[("b", &small_l), ("a", &ti), ("c", &small_i), ("d", &tl)]).unwrap();
    assert_eq!((train.count, test.count), (10_000, 3));
    assert_eq!(test.labels, [1, 2, 3]);
    // Two files: the last tenth is held out.
    let (train, test) = datasets_from_files_unlimited(&[("l", &tl), ("i", &ti)]).unwrap();
    assert_eq!((train.count, test.count), (9_000, 1_000));
    let whole = Dataset::from_idx(&ti, &tl).unwrap();
    assert_eq!(test.image(0), whole.image(9_000));
    assert_eq!(test.labels[..], whole.labels[9_000..]);
}

#[test]
fn unusable_file_sets_say_why() {
    let (i, l) = (images_idx(3, 2, 2, &[0; 12]), labels_idx(&[1, 2, 3]));
    let message = |files: &[(&str, &[u8])]| datasets_from_files_unlimited(files).unwrap_err().to_string();
    assert!(message(&[("i", &i)]).contains("choose 2 files"));
    assert!(message(&[("i", &i), ("j", &i)]).contains("2 images files and 0 labels"));
    let err = message(&[("notes.txt", b"hello, world"), ("l", &l)]);
    assert!(err.starts_with("notes.txt: not an IDX file"), "{err}");
    assert!(message(&[("i", &i), ("l", &labels_idx(&[1, 2]))]).contains("holds 3 images but l holds 2 labels"));
    let other_size = images_idx(2, 3, 3, &[0; 18]);
    let err = message(&[("i", &i), ("l", &l), ("j", &other_size), ("m", &labels_idx(&[1, 2]))]);
    assert!(err.contains("2x2") && err.contains("3x3"), "{err}");
    let truncated = &gzip(&i)[..20];
    assert!(matches!(
        datasets_from_files_unlimited(&[("t.gz", truncated), ("l", &l)]),
        Err(DataError::InFile { ref name, .. }) if name == "t.gz"
    ));
}

/// Centre of mass (x, y) and bounding box (x0, y0, x1, y1) of a 28x28 image.
fn com_and_box(img: &[f32]) -> ((f64, f64), (usize, usize, usize, usize)) {
    com_and_box_of(img, 28)
}

/// Centre of mass and bounding box of an image `cols` wide.
fn com_and_box_of(img: &[f32], cols: usize) -> ((f64, f64), (usize, usize, usize, usize)) {
    let (mut total, mut cx, mut cy) = (0.0, 0.0, 0.0);
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, &v) in img.iter().enumerate() {
        let (x, y) = (i % cols, i / cols);
        total += v as f64;
        cx += v as f64 * x as f64;
        cy += v as f64 * y as f64;
        if v > 0.0 {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    ((cx / total, cy / total), (x0, y0, x1, y1))
}

#[test]
fn drawings_are_centred_like_mnist() {
    // A tall bar drawn in the top-left corner of a 280x280 canvas.
    let (w, h) = (280, 280);
    let mut ink = vec![0f32; w * h];
    for y in 10..110 {
        for x in 20..50 {
            ink[y * w + x] = 1.0;
        }
    }
    let img = centre_digit(&ink, w, h, 28, 28);
    assert_eq!(img.len(), 784);
    let ((cx, cy), (x0, y0, x1, y1)) = com_and_box(&img);
    assert!((cx - 13.5).abs() <= 0.5 && (cy - 13.5).abs() <= 0.5, "centre of mass at ({cx}, {cy})");
    assert_eq!(y1 - y0 + 1, 20, "the longer side is scaled to 20 pixels");
    assert_eq!(x1 - x0 + 1, 6, "the aspect ratio is kept (30:100 of 20 is 6)");
    assert!(img.iter().all(|&v| (0.0..=1.0).contains(&v)));
    // A blank canvas stays blank.
    assert!(centre_digit(&vec![0.0; 100], 10, 10, 28, 28).iter().all(|&v| v == 0.0));
    // For other image sizes (a dataset of 32x40 images): the box is 20/28 of the shorter side
    // (23 of 32), centred on (19.5, 15.5).
    let img = centre_digit(&ink, w, h, 32, 40);
    assert_eq!(img.len(), 32 * 40);
    let ((cx, cy), (x0, y0, x1, y1)) = com_and_box_of(&img, 40);
    assert!((cx - 19.5).abs() <= 0.5 && (cy - 15.5).abs() <= 0.5, "centre of mass at ({cx}, {cy})");
    assert_eq!((y1 - y0 + 1, x1 - x0 + 1), (23, 7), "the longer side scaled to 23 pixels, the aspect kept");
    // A real MNIST digit (already 20 pixels tall) keeps its size and ends up centred.
    let (_, test) = bundled_mnist().unwrap();
    let digit = test.image(0);
    let (_, (a0, b0, a1, b1)) = com_and_box(&digit);
    let ((cx, cy), (x0, y0, x1, y1)) = com_and_box(&centre_digit(&digit, 28, 28, 28, 28));
    assert!((cx - 13.5).abs() <= 0.5 && (cy - 13.5).abs() <= 0.5, "centre of mass at ({cx}, {cy})");
    assert!((x1 - x0).abs_diff(a1 - a0) <= 1 && (y1 - y0).abs_diff(b1 - b0) <= 1);
}
