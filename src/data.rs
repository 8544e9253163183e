//! Datasets: the IDX format (MNIST's, raw or gzipped), image/label pairs, and batching order.
//!
//! Every malformed input is an `Err` naming what is wrong; sizes are checked against the bytes
//! actually present before anything is allocated, so a header claiming billions of images costs
//! nothing.

use std::fmt;
use std::io::Read;

use crate::rng::Rng;

/// The largest decompressed IDX file we accept (the official MNIST training images are 47 MB).
pub const MAX_IDX_BYTES: usize = 512 << 20;

#[derive(Clone, Debug, PartialEq)]
pub enum DataError {
    Empty,
    Gzip(String),
    TooLarge { limit: usize },
    BadMagic { found: [u8; 4] },
    NotBytes { type_code: u8 },
    WrongRank { expected: u8, found: u8 },
    TruncatedHeader { needed: usize, found: usize },
    SizeMismatch { header_bytes: u64, found: usize },
    ZeroSize,
    CountMismatch { images: usize, labels: usize },
    /// A set of files that does not make a dataset (wrong number, unpaired, different sizes).
    Files(String),
    /// An error in one named file of a set.
    InFile { name: String, error: Box<DataError> },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Empty => write!(f, "the file is empty"),
            DataError::Gzip(e) => write!(f, "the file looks gzipped but does not decompress: {e}"),
            DataError::TooLarge { limit } => write!(f, "the file decompresses to more than {} MB", limit >> 20),
            DataError::BadMagic { found } => write!(
                f,
                "not an IDX file: it starts with bytes {found:02x?}, but IDX files start with 00 00 <type> <rank>"
            ),
            DataError::NotBytes { type_code } => {
                write!(f, "IDX element type 0x{type_code:02x} is not supported (only unsigned bytes, 0x08)")
            }
            DataError::WrongRank { expected, found } => write!(
                f,
                "IDX file has {found} dimensions but {} need {expected}",
                if *expected == 3 { "images" } else { "labels" }
            ),
            DataError::TruncatedHeader { needed, found } => {
                write!(f, "the IDX header is cut short: it needs {needed} bytes, the file has {found}")
            }
            DataError::SizeMismatch { header_bytes, found } => write!(
                f,
                "the IDX header describes {header_bytes} bytes of data but the file holds {found} \
                 (truncated, or not the file it claims to be)"
            ),
            DataError::ZeroSize => write!(f, "the IDX file holds no items (a dimension is zero)"),
            DataError::CountMismatch { images, labels } => {
                write!(f, "the images file holds {images} images but the labels file holds {labels} labels")
            }
            DataError::Files(why) => write!(f, "{why}"),
            DataError::InFile { name, error } => write!(f, "{name}: {error}"),
        }
    }
}

impl std::error::Error for DataError {}

/// The contents of an IDX file of unsigned bytes: its dimensions and its data.
#[derive(Clone, Debug, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Decompresses if the bytes start with the gzip magic; passes raw bytes through.
fn maybe_gunzip(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, DataError> {
    if bytes.len() < 2 || bytes[..2] != [0x1f, 0x8b] {
        return Ok(bytes.into());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_IDX_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::Gzip(e.to_string()))?;
    if out.len() > MAX_IDX_BYTES {
        return Err(DataError::TooLarge { limit: MAX_IDX_BYTES });
    }
    Ok(out.into())
}

/// Parses an IDX file (raw or gzipped) of unsigned bytes with the given rank.
pub fn parse_idx(bytes: &[u8], rank: u8) -> Result<Idx, DataError> {
    let idx = parse_idx_any_rank(bytes)?;
    if idx.dims.len() != rank as usize {
        return Err(DataError::WrongRank { expected: rank, found: idx.dims.len() as u8 });
    }
    Ok(idx)
}

/// Parses an IDX file (raw or gzipped) of unsigned bytes, whatever its rank.
fn parse_idx_any_rank(bytes: &[u8]) -> Result<Idx, DataError> {
    if bytes.is_empty() {
        return Err(DataError::Empty);
    }
    let bytes = maybe_gunzip(bytes)?;
    if bytes.len() < 4 {
        return Err(DataError::TruncatedHeader { needed: 4, found: bytes.len() });
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic[0] != 0 || magic[1] != 0 || magic[3] == 0 || magic[3] > 4 {
        return Err(DataError::BadMagic { found: magic });
    }
    if magic[2] != 0x08 {
        return Err(DataError::NotBytes { type_code: magic[2] });
    }
    let rank = magic[3];
    let header = 4 + 4 * rank as usize;
    if bytes.len() < header {
        return Err(DataError::TruncatedHeader { needed: header, found: bytes.len() });
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    // Checked in u64 so absurd headers cannot overflow; compared with what is really there.
    let header_bytes = dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d as u64));
    if header_bytes == 0 {
        return Err(DataError::ZeroSize);
    }
    let found = bytes.len() - header;
    if header_bytes != found as u64 {
        return Err(DataError::SizeMismatch { header_bytes, found });
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}

/// A training and a test set from files the user chose, in any order, raw or gzipped: the four
/// official files (images and labels, training and test; the larger pair trains), or one
/// images file with its labels file, of which the last tenth (at most 10,000) becomes the test
/// set. Files are told apart by their IDX rank (3 = images, 1 = labels) and paired by count.
pub fn datasets_from_files(files: &[(&str, &[u8])]) -> Result<(Dataset, Dataset), DataError> {
    if files.len() != 2 && files.len() != 4 {
        return Err(DataError::Files(format!(
            "choose 2 files (images and labels) or 4 (training and test images and labels); got {}",
            files.len()
        )));
    }
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for &(name, bytes) in files {
        let in_file = |error| DataError::InFile { name: name.to_string(), error: Box::new(error) };
        let idx = parse_idx_any_rank(bytes).map_err(in_file)?;
        match idx.dims.len() {
            3 => images.push((name, idx)),
            1 => labels.push((name, idx)),
            n => return Err(in_file(DataError::Files(format!("has {n} dimensions; IDX images have 3 and labels 1")))),
        }
    }
    if images.len() != labels.len() {
        return Err(DataError::Files(format!(
            "got {} images files and {} labels files; each images file needs its labels file",
            images.len(),
            labels.len()
        )));
    }
    // Largest first: the training pair, then the test pair.
    images.sort_by_key(|(_, i)| std::cmp::Reverse(i.dims[0]));
    labels.sort_by_key(|(_, l)| std::cmp::Reverse(l.dims[0]));
    let mut sets = Vec::new();
    for ((image_name, i), (label_name, l)) in images.into_iter().zip(labels) {
        if i.dims[0] != l.dims[0] {
            return Err(DataError::Files(format!(
                "{image_name} holds {} images but {label_name} holds {} labels",
                i.dims[0], l.dims[0]
            )));
        }
        sets.push(Dataset { count: i.dims[0], rows: i.dims[1], cols: i.dims[2], pixels: i.data, labels: l.data });
    }
    if let [train, test] = &sets[..] {
        if (train.rows, train.cols) != (test.rows, test.cols) {
            return Err(DataError::Files(format!(
                "the training images are {}x{} but the test images are {}x{}",
                train.rows, train.cols, test.rows, test.cols
            )));
        }
    }
    let mut sets = sets.into_iter();
    let first = sets.next().expect("one pair at least");
    match sets.next() {
        Some(test) => Ok((first, test)),
        None => first.split_off_test(),
    }
}

/// Images with their labels, pixels as bytes (0 = background, 255 = ink).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count * rows * cols` bytes, image after image, row-major.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Pairs an images file (rank 3) with a labels file (rank 1); each raw or gzipped.
    pub fn from_idx(images: &[u8], labels: &[u8]) -> Result<Dataset, DataError> {
        let images = parse_idx(images, 3)?;
        let labels = parse_idx(labels, 1)?;
        if images.dims[0] != labels.dims[0] {
            return Err(DataError::CountMismatch { images: images.dims[0], labels: labels.dims[0] });
        }
        Ok(Dataset {
            count: images.dims[0],
            rows: images.dims[1],
            cols: images.dims[2],
            pixels: images.data,
            labels: labels.data,
        })
    }

    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// Image `i` as floats in [0, 1].
    pub fn image(&self, i: usize) -> Vec<f32> {
        let n = self.pixels_per_image();
        self.pixels[i * n..(i + 1) * n].iter().map(|&p| p as f32 / 255.0).collect()
    }

    /// The average image, as floats in [0, 1].
    pub fn mean_image(&self) -> Vec<f32> {
        let n = self.pixels_per_image();
        let mut sum = vec![0u64; n];
        for image in self.pixels.chunks_exact(n) {
            for (s, &p) in sum.iter_mut().zip(image) {
                *s += p as u64;
            }
        }
        sum.into_iter().map(|s| s as f32 / (255.0 * self.count as f32)).collect()
    }

    /// Splits off the last tenth (at most 10,000 items) as a test set: (train, test).
    fn split_off_test(mut self) -> Result<(Dataset, Dataset), DataError> {
        if self.count < 2 {
            return Err(DataError::Files("one image is too few to split into training and test sets".into()));
        }
        let test_count = (self.count / 10).clamp(1, 10_000);
        let keep = self.count - test_count;
        let n = self.pixels_per_image();
        let test = Dataset {
            count: test_count,
            rows: self.rows,
            cols: self.cols,
            pixels: self.pixels.split_off(keep * n),
            labels: self.labels.split_off(keep),
        };
        self.count = keep;
        Ok((self, test))
    }

    /// The first `n` items (for small tests).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.count);
        Dataset {
            count: n,
            rows: self.rows,
            cols: self.cols,
            pixels: self.pixels[..n * self.pixels_per_image()].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }
}

/// The bundled MNIST subset (see `www/data/README.md`): (train, test).
#[cfg(not(target_arch = "wasm32"))]
pub fn bundled_mnist() -> Result<(Dataset, Dataset), DataError> {
    let train = Dataset::from_idx(
        include_bytes!("../www/data/train-images-idx3-ubyte.gz"),
        include_bytes!("../www/data/train-labels-idx1-ubyte.gz"),
    )?;
    let test = Dataset::from_idx(
        include_bytes!("../www/data/t10k-images-idx3-ubyte.gz"),
        include_bytes!("../www/data/t10k-labels-idx1-ubyte.gz"),
    )?;
    Ok((train, test))
}

/// The order in which an epoch visits the training set: a seeded Fisher-Yates shuffle, so the
/// CPU oracle and the GPU trainer see the same batches.
pub fn epoch_permutation(count: usize, seed: u32, epoch: u32) -> Vec<u32> {
    let mut order: Vec<u32> = (0..count as u32).collect();
    let mut rng = Rng::new(seed ^ epoch.wrapping_mul(0x85EB_CA6B).wrapping_add(0x27D4_EB2F));
    for i in (1..count).rev() {
        let j = ((rng.next_u32() as u64 * (i as u64 + 1)) >> 32) as usize;
        order.swap(i, j);
    }
    order
}

/// A digit drawn by hand (ink in [0, 1], `width` x `height`, row-major) prepared as MNIST's
/// digits were: its bounding box scaled (keeping its aspect ratio, with area averaging) to fit
/// 20x20, then placed in a 28x28 image so that its centre of mass is at the centre.
/// A blank drawing gives a blank image.
pub fn centre_digit(ink: &[f32], width: usize, height: usize) -> Vec<f32> {
    assert_eq!(ink.len(), width * height, "ink must be width x height");
    const SIDE: usize = 28;
    const BOX: f64 = 20.0;
    let mut out = vec![0f32; SIDE * SIDE];
    let inked = |x: usize, y: usize| ink[y * width + x] > 0.05;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..height {
        for x in 0..width {
            if inked(x, y) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    if x0 == usize::MAX {
        return out;
    }
    let (bw, bh) = ((x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64);
    let scale = BOX / bw.max(bh);
    let (w, h) = (((bw * scale).round() as usize).max(1), ((bh * scale).round() as usize).max(1));
    // Area averaging: each output pixel is the mean of an n x n grid of source samples.
    let n = ((1.0 / scale).ceil() as usize).clamp(1, 16) * 2;
    let mut small = vec![0f64; w * h];
    for (i, v) in small.iter_mut().enumerate() {
        let (ox, oy) = ((i % w) as f64, (i / w) as f64);
        let mut sum = 0.0;
        for sy in 0..n {
            for sx in 0..n {
                let x = x0 as f64 + (ox + (sx as f64 + 0.5) / n as f64) / scale;
                let y = y0 as f64 + (oy + (sy as f64 + 0.5) / n as f64) / scale;
                sum += ink[(y as usize).min(height - 1) * width + (x as usize).min(width - 1)] as f64;
            }
        }
        *v = sum / (n * n) as f64;
    }
    let total: f64 = small.iter().sum();
    if total <= 0.0 {
        return out;
    }
    let (cx, cy) = small.iter().enumerate().fold((0.0, 0.0), |(cx, cy), (i, &v)| (cx + v * (i % w) as f64, cy + v * (i / w) as f64));
    // Shift so the centre of mass lands on pixel 13.5, the image's centre, staying inside.
    let centre = (SIDE as f64 - 1.0) / 2.0;
    let left = ((centre - cx / total).round() as isize).clamp(0, (SIDE - w) as isize) as usize;
    let top = ((centre - cy / total).round() as isize).clamp(0, (SIDE - h) as isize) as usize;
    for (i, &v) in small.iter().enumerate() {
        out[(top + i / w) * SIDE + left + i % w] = v.min(1.0) as f32;
    }
    out
}
